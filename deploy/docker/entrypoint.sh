#!/bin/sh
# Container entry point: `entrypoint.sh <service>` migrates that service's database, then serves it.
# `entrypoint.sh topics` creates the Kafka topics. Anything else is run as a command.
set -eu
case "${1:-}" in
  registry|custody|audit)
    cd "/app/services/$1"
    python -m alembic -c alembic.ini upgrade head
    cd /app
    exec python -m "$1" ;;
  topics)
    shift
    exec python -m shared.topics "$@" ;;
  *)
    exec "$@" ;;
esac
