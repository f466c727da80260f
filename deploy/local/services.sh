#!/usr/bin/env bash
# Start, stop and report the three services (registry, custody, audit) as local processes.
#   deploy/local/services.sh start|stop|status
# Each service reads its own settings (REGISTRY_*, CUSTODY_*, AUDIT_* environment variables); ports default to
# 8001-8003 on 127.0.0.1. Logs: $MCOC_VAR/log/<service>.log (JSON lines). Pids: $MCOC_VAR/run/<service>.pid.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VAR="${MCOC_VAR:-$ROOT/var}"
RUN="$VAR/run"
LOG="$VAR/log"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
SERVICES=(registry custody audit)

say() { echo "[services] $*"; }
die() { echo "[services] ERROR: $*" >&2; exit 1; }

port_of() {
  local upper; upper="$(echo "$1" | tr '[:lower:]' '[:upper:]')"
  local var="${upper}_PORT"
  case "$1" in registry) echo "${!var:-8001}";; custody) echo "${!var:-8002}";; audit) echo "${!var:-8003}";; esac
}
host_of() {
  local upper; upper="$(echo "$1" | tr '[:lower:]' '[:upper:]')"
  local var="${upper}_HOST"
  echo "${!var:-127.0.0.1}"
}

alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

port_busy() {
  "$PY" - "$1" "$2" <<'PYEOF'
import socket, sys
s = socket.socket()
s.settimeout(0.5)
sys.exit(0 if s.connect_ex((sys.argv[1], int(sys.argv[2]))) == 0 else 1)
PYEOF
}

# Our PostgreSQL (deploy/local/infra.sh) through its Unix socket, for a service whose <SERVICE>_DATABASE_URL is not set:
# each statement costs less CPU than over TCP loopback (custody's writes: ~10% more per second, see bench/common.py).
use_pg_socket() {
  local sock="$VAR/pg/sock" port="${MCOC_PG_PORT:-5433}" svc var
  local path="$sock/.s.PGSQL.$port"
  [ -S "$path" ] && [ "${#path}" -lt 100 ] || return 0  # sun_path holds 107 bytes (the same rule as bench.common.local_pg)
  for svc in "${SERVICES[@]}"; do
    var="$(echo "$svc" | tr '[:lower:]' '[:upper:]')_DATABASE_URL"
    if [ -z "${!var:-}" ]; then export "$var=postgresql+asyncpg://postgres@/$svc?host=$sock&port=$port"; fi
  done
}

# The operator token: MCOC_ADMIN_TOKEN if set, else the one kept in $VAR/operator-token (generated on first start,
# readable by this user only). Each service gets it as <SERVICE>_ADMIN_TOKEN unless that is set already; the services
# refuse to start with a short or well-known token (MCOC_INSECURE_DEV_OPERATOR_TOKEN=1 allows one on a laptop).
operator_token() {
  local file="$VAR/operator-token" svc var
  if [ -z "${MCOC_ADMIN_TOKEN:-}" ]; then
    if [ ! -s "$file" ]; then
      mkdir -p "$VAR"
      (umask 077 && "$PY" -c 'import secrets; print(secrets.token_urlsafe(32))' >"$file")
      say "generated the operator token in $file (the dashboard and the operator endpoints ask for it)"
    fi
    MCOC_ADMIN_TOKEN="$(cat "$file")"
  fi
  export MCOC_ADMIN_TOKEN
  for svc in REGISTRY CUSTODY AUDIT; do
    var="${svc}_ADMIN_TOKEN"
    if [ -z "${!var:-}" ]; then export "$var=$MCOC_ADMIN_TOKEN"; fi
  done
}

start() {
  [ -x "$PY" ] || die "no Python at $PY; run \`make install\` first"
  mkdir -p "$RUN" "$LOG"
  use_pg_socket
  operator_token
  rm -f "$RUN/stop-requested"
  local svc port host
  for svc in "${SERVICES[@]}"; do
    port="$(port_of "$svc")"; host="$(host_of "$svc")"
    if alive "$svc"; then say "$svc already running (pid $(cat "$RUN/$svc.pid"), port $port)"; continue; fi
    if [ -f "$RUN/$svc.pid" ]; then say "$svc: removing stale pid file (pid $(cat "$RUN/$svc.pid") is gone)"; rm -f "$RUN/$svc.pid"; fi
    if port_busy "$host" "$port"; then
      die "port $port ($svc) is in use by another process; stop it or set $(echo "$svc" | tr '[:lower:]' '[:upper:]')_PORT"
    fi
    # A session of its own: a Ctrl-C at the terminal reaches `make run`, which stops the services in order.
    (cd "$ROOT" && exec setsid nohup "$PY" -m "$svc" >>"$LOG/$svc.log" 2>&1 </dev/null) &
    echo $! >"$RUN/$svc.pid"
    say "$svc starting (pid $!, http://$host:$port, log $LOG/$svc.log)"
  done
  for svc in "${SERVICES[@]}"; do
    port="$(port_of "$svc")"; host="$(host_of "$svc")"
    local deadline=$((SECONDS + 60))
    until "$PY" -c "import httpx,sys; sys.exit(0 if httpx.get('http://$host:$port/readyz', timeout=2).status_code == 200 else 1)" 2>/dev/null; do
      if ! alive "$svc"; then tail -n 30 "$LOG/$svc.log" >&2 || true; die "$svc exited during start-up (log above, full log $LOG/$svc.log)"; fi
      if [ $SECONDS -ge $deadline ]; then tail -n 30 "$LOG/$svc.log" >&2 || true; die "$svc not ready after 60 s: see $LOG/$svc.log and http://$host:$port/readyz"; fi
      sleep 0.5
    done
    say "$svc ready: http://$host:$port  (API docs http://$host:$port/docs)"
  done
}

stop() {
  local svc pid
  if [ -d "$RUN" ]; then touch "$RUN/stop-requested"; fi  # tells a waiting `make run` that this stop is wanted
  for svc in "${SERVICES[@]}"; do
    if alive "$svc"; then
      pid="$(cat "$RUN/$svc.pid")"
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      if kill -0 "$pid" 2>/dev/null; then say "$svc did not stop in 15 s; killing"; kill -KILL "$pid" 2>/dev/null || true; fi
      say "$svc stopped"
    fi
    rm -f "$RUN/$svc.pid"
  done
}

status() {
  local svc rc=0
  for svc in "${SERVICES[@]}"; do
    if alive "$svc"; then say "$svc running (pid $(cat "$RUN/$svc.pid"), port $(port_of "$svc"))"; else say "$svc stopped"; rc=3; fi
  done
  return $rc
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
