#!/usr/bin/env python3
"""Wait until a Kafka broker answers a metadata request (an open port is not enough).

Usage: kafka_ready.py --bootstrap 127.0.0.1:9092 [--timeout 60] [--pid PID] [--quiet]

Prints a dot per second while waiting, then one line saying what answered (--quiet: only
the dots and a newline). Exit codes: 0 ready, 1 timeout,
2 the process given with --pid exited while we were waiting.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


async def _probe(bootstrap: str, request_timeout_ms: int) -> dict | None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=request_timeout_ms,
        client_id="mcoc-kafka-ready",
    )
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        if cluster.get("brokers"):
            return cluster
        return None
    finally:
        try:
            await admin.close()
        except Exception:  # noqa: BLE001 - best effort cleanup of a probe client
            pass


async def wait_ready(bootstrap: str, wait_s: float, pid: int | None, quiet: bool = False) -> int:
    deadline = time.monotonic() + wait_s
    last_error = "no attempt made"
    dots = 0
    while True:
        started = time.monotonic()
        remaining = deadline - started
        if remaining <= 0:
            break
        per_try = max(1.0, min(5.0, remaining))
        try:
            cluster = await asyncio.wait_for(_probe(bootstrap, int(per_try * 1000)), timeout=per_try + 1)
            if cluster is not None:
                if quiet:
                    print(flush=True)
                    return 0
                if dots:
                    print(flush=True)
                brokers = ", ".join(f"{b['node_id']}@{b['host']}:{b['port']}" for b in cluster["brokers"])
                print(
                    f"kafka ready: cluster {cluster.get('cluster_id')} "
                    f"controller {cluster.get('controller_id')} brokers [{brokers}]",
                    flush=True,
                )
                return 0
            last_error = "metadata response listed no brokers yet"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last_error = f"{type(exc).__name__}: {exc}"
        if pid is not None and not _alive(pid):
            if dots or quiet:
                print(flush=True)
            print(f"kafka process {pid} exited while waiting ({last_error})", file=sys.stderr)
            return 2
        print(".", end="", flush=True)
        dots += 1
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    if dots or quiet:
        print(flush=True)
    print(
        f"kafka not ready at {bootstrap} after {wait_s:g} s (last error: {last_error})",
        file=sys.stderr,
    )
    return 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--pid", type=int, default=None, help="give up early if this process exits")
    parser.add_argument("--quiet", action="store_true", help="print only the dots and a final newline")
    args = parser.parse_args()
    # aiokafka logs every refused connection at ERROR; while waiting that is noise.
    logging.basicConfig(level=logging.CRITICAL)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        import aiokafka  # noqa: F401
    except ImportError:
        print(f"aiokafka is not installed in {sys.executable}: run `make install` first", file=sys.stderr)
        return 1
    return asyncio.run(wait_ready(args.bootstrap, args.timeout, args.pid, args.quiet))


if __name__ == "__main__":
    sys.exit(main())
