#!/usr/bin/env bash
# `make run`: start the services (infrastructure and migrations are done by make), print where they are, and stay
# in the foreground until Ctrl-C, which stops everything (services, Kafka, PostgreSQL).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

stop_all() {
  trap - INT TERM
  trap '' PIPE  # the terminal or a pipe may be gone already: stopping must still happen
  set +e
  if ! { echo; echo "[run] stopping everything"; } 2>/dev/null; then
    exec >/dev/null 2>&1  # stdout was a pipe that Ctrl-C closed (e.g. `make run | tee`): stop silently
  fi
  deploy/local/services.sh stop
  deploy/local/infra.sh stop
  exit 0
}
trap stop_all INT TERM

deploy/local/services.sh start
if [ "${MCOC_DEMO:-1}" != 0 ]; then  # MCOC_DEMO=0 make run: no demo data
  "${PYTHON:-$ROOT/.venv/bin/python}" deploy/demo/seed.py || echo "[run] the demo could not be seeded (see above); the services keep running"
fi
cat <<TXT

  registry  http://${REGISTRY_HOST:-127.0.0.1}:${REGISTRY_PORT:-8001}/docs
  custody   http://${CUSTODY_HOST:-127.0.0.1}:${CUSTODY_PORT:-8002}/docs
  audit     http://${AUDIT_HOST:-127.0.0.1}:${AUDIT_PORT:-8003}/docs
  dashboard http://${AUDIT_HOST:-127.0.0.1}:${AUDIT_PORT:-8003}/dashboard/  (operator token: in ${MCOC_VAR:-$ROOT/var}/operator-token)
  demo      tokens of the demo participants: ${MCOC_VAR:-$ROOT/var}/demo/participants.json
  logs      ${MCOC_VAR:-$ROOT/var}/log/<service>.log (JSON lines)

  Everything is running. Ctrl-C here (or \`make stop\` elsewhere) stops it all.
TXT
RUNDIR="${MCOC_VAR:-$ROOT/var}/run"
while true; do
  sleep 2 &
  wait $! || true  # `wait` returns at once on a signal, so the trap runs without delay
  alive=0
  for svc in registry custody audit; do
    if [ -f "$RUNDIR/$svc.pid" ] && kill -0 "$(cat "$RUNDIR/$svc.pid")" 2>/dev/null; then alive=$((alive + 1)); fi
  done
  if [ -f "$RUNDIR/stop-requested" ]; then echo "[run] stopped by \`make stop\`; bye"; exit 0; fi
  if [ "$alive" -lt 3 ]; then
    echo "[run] a service stopped unexpectedly:"; deploy/local/services.sh status || true
    echo "[run] see ${MCOC_VAR:-$ROOT/var}/log/; \`make stop\` stops the rest, \`make run\` starts again"
    exit 1
  fi
done
