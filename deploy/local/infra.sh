#!/usr/bin/env bash
# Local infrastructure for development, tests and CI: a private PostgreSQL cluster and a
# single-node Apache Kafka (KRaft) broker, both on 127.0.0.1, no Docker.
#
# Usage: deploy/local/infra.sh start|stop|status [pg|kafka|all]   (default: all)
#        deploy/local/infra.sh kill-kafka                          (SIGKILL the broker, for fault tests)
#
# Environment (defaults):
#   MCOC_VAR                   <repo>/var    state: pg data/logs, kafka jars/data/logs
#   MCOC_PG_PORT               5433
#   MCOC_PG_DATABASES          "registry custody audit"
#   MCOC_PG_ARCHIVE            on        WAL archiving into $MCOC_VAR/pg/wal-archive (off: none; see backup.sh)
#   MCOC_KAFKA_PORT            9092
#   MCOC_KAFKA_CONTROLLER_PORT 9093
#   MCOC_KAFKA_VERSION         4.1.1
#   MCOC_KAFKA_HEAP            768m
#   PYTHON                     <repo>/.venv/bin/python   (runs kafka_ready.py; needs aiokafka)
#
# Exit codes: 0 ok; status: 3 when (any of) the requested service(s) is not running; 1 on errors.
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/../.." && pwd -P)"

MCOC_VAR="${MCOC_VAR:-$REPO_ROOT/var}"
MCOC_PG_PORT="${MCOC_PG_PORT:-5433}"
MCOC_PG_DATABASES="${MCOC_PG_DATABASES-registry custody audit}"
MCOC_PG_ARCHIVE="${MCOC_PG_ARCHIVE:-on}"
MCOC_KAFKA_PORT="${MCOC_KAFKA_PORT:-9092}"
MCOC_KAFKA_CONTROLLER_PORT="${MCOC_KAFKA_CONTROLLER_PORT:-9093}"
MCOC_KAFKA_VERSION="${MCOC_KAFKA_VERSION:-4.1.1}"
MCOC_KAFKA_HEAP="${MCOC_KAFKA_HEAP:-768m}"
PYTHON="${PYTHON:-$REPO_ROOT/.venv/bin/python}"

# Make MCOC_VAR absolute (relative values are taken from the caller's cwd).
case "$MCOC_VAR" in
  /*) ;;
  *) MCOC_VAR="$PWD/$MCOC_VAR" ;;
esac
MCOC_VAR="${MCOC_VAR%/}"

PG_LINK="$MCOC_VAR/pg"            # a folder, or a symlink to /tmp/mcoc-pg-<hash> (see pg_prepare_dirs)
KAFKA_DIR="$MCOC_VAR/kafka"
KAFKA_LIBS="$KAFKA_DIR/libs-$MCOC_KAFKA_VERSION"
KAFKA_DATA="$KAFKA_DIR/data"
KAFKA_LOGS="$KAFKA_DIR/logs"
KAFKA_PROPS="$KAFKA_DIR/server.properties"
KAFKA_PID_FILE="$KAFKA_DIR/kafka.pid"
KAFKA_POM="$SCRIPT_DIR/kafka/pom.xml"
KAFKA_LOG4J="$SCRIPT_DIR/kafka/log4j2.properties"

say()  { printf '[infra] %s\n' "$*"; }
warn() { printf '[infra] WARNING: %s\n' "$*" >&2; }
die()  { printf '[infra] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
  cat <<EOF
usage: deploy/local/infra.sh start|stop|status [pg|kafka|all]   (default: all)
       deploy/local/infra.sh kill-kafka    SIGKILL the Kafka broker (fault tests); 'start kafka' brings it back
env:   MCOC_VAR=$MCOC_VAR
       MCOC_PG_PORT=$MCOC_PG_PORT MCOC_PG_DATABASES="$MCOC_PG_DATABASES"
       MCOC_KAFKA_PORT=$MCOC_KAFKA_PORT MCOC_KAFKA_CONTROLLER_PORT=$MCOC_KAFKA_CONTROLLER_PORT
       MCOC_KAFKA_VERSION=$MCOC_KAFKA_VERSION MCOC_KAFKA_HEAP=$MCOC_KAFKA_HEAP PYTHON=$PYTHON
EOF
}

check_port_value() { # name value
  [[ "$2" =~ ^[0-9]+$ ]] && (( $2 >= 1 && $2 <= 65535 )) || die "$1='$2' is not a TCP port number"
}

now_ms() { date +%s%3N; }
elapsed() { # start_ms -> "1.23 s"
  local d=$(( $(now_ms) - $1 ))
  printf '%d.%02d s' $(( d / 1000 )) $(( (d % 1000) / 10 ))
}

# --- processes and ports -----------------------------------------------------------------------

pid_alive() { # pid -> true if the process exists and is not a zombie
  local pid="$1" state
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  state="$(awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$pid/stat" 2>/dev/null || true)"
  [[ "$state" != "Z" ]]
}

proc_cmdline() { # pid -> command line with spaces
  tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true
}

# Prints "pid<TAB>description" of what listens on TCP port $1 (any address); nothing if free.
port_owner() {
  local port="$1" line pid
  if command -v ss >/dev/null 2>&1; then
    line="$(ss -Hltnp "sport = :$port" 2>/dev/null | head -n1 || true)"
    [[ -n "$line" ]] || return 0
    pid="$(grep -o 'pid=[0-9]*' <<<"$line" | head -n1 | cut -d= -f2 || true)"
    if [[ -n "$pid" ]]; then
      printf '%s\t%s\n' "$pid" "$(proc_cmdline "$pid" | cut -c1-160)"
    else
      printf '\t%s\n' "$(awk '{print $4}' <<<"$line") (process unknown)"
    fi
    return 0
  fi
  # No ss: read /proc/net/tcp{,6} for a LISTEN socket on the port and map its inode to a pid.
  python3 - "$port" <<'PY'
import os, sys
port = int(sys.argv[1]); inodes = set()
for name in ("/proc/net/tcp", "/proc/net/tcp6"):
    try:
        rows = open(name).read().splitlines()[1:]
    except OSError:
        continue
    for row in rows:
        f = row.split()
        if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(f[9])
if not inodes:
    sys.exit(0)
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:[") and link[8:-1] in inodes:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
                print(f"{pid}\t{cmd[:160]}"); sys.exit(0)
    except OSError:
        continue
print("\tport in use (process unknown)")
PY
}

# Fails with a helpful message when $1 (port) is taken. $2: env var to change, $3: service label.
require_port_free() {
  local port="$1" var="$2" what="$3" owner pid desc
  owner="$(port_owner "$port")"
  [[ -z "$owner" ]] && return 0
  pid="${owner%%$'\t'*}"; desc="${owner#*$'\t'}"
  die "port $port ($what) is already in use by ${pid:+pid $pid: }$desc
[infra]   stop that process, or pick another port: $var=<port> $0 start"
}

# --- PostgreSQL --------------------------------------------------------------------------------

PG_BIN=""
PG_DATA=""; PG_LOGDIR=""; PG_LOGFILE=""; PG_SOCK=""; PG_ARCHIVE=""

pg_set_paths() {
  # Through a symlink, use the target's path: postgres may be unable to traverse $MCOC_VAR.
  local base="$PG_LINK"
  if [[ -L "$PG_LINK" ]]; then
    base="$(readlink "$PG_LINK")"
  fi
  PG_DATA="$base/data"
  PG_LOGDIR="$base/log"
  PG_LOGFILE="$PG_LOGDIR/postgres.log"
  PG_SOCK="$base/sock"
  PG_ARCHIVE="$base/wal-archive"  # beside the cluster: where postgres can write whatever MCOC_VAR is
}
pg_set_paths

as_pg() { # run a command as the postgres user (or as ourselves when not root), from /
  if (( EUID == 0 )); then
    (cd / && runuser -u postgres -- "$@")
  else
    (cd / && "$@")
  fi
}

pg_find_bin() {
  local want="" d
  # An existing cluster must be run by its own major version.
  if [[ -f "$PG_DATA/PG_VERSION" ]]; then
    want="$(cat "$PG_DATA/PG_VERSION")"
    if [[ -x "/usr/lib/postgresql/$want/bin/pg_ctl" ]]; then
      PG_BIN="/usr/lib/postgresql/$want/bin"; return 0
    fi
  fi
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
  if [[ -n "$d" && -x "$d/pg_ctl" ]]; then
    [[ -n "$want" ]] && die "the cluster in $PG_DATA is PostgreSQL $want but only $d is installed:
[infra]   install postgresql-$want, or remove $PG_DATA to start afresh (its data is lost)"
    PG_BIN="$d"; return 0
  fi
  return 1
}

pg_ensure_installed() {
  pg_find_bin && return 0
  if (( EUID != 0 )); then
    die "PostgreSQL not found under /usr/lib/postgresql/*/bin: run 'sudo apt-get install -y postgresql'"
  fi
  say "PostgreSQL not found under /usr/lib/postgresql: installing it (apt-get install -y postgresql)"
  if ! { DEBIAN_FRONTEND=noninteractive apt-get update -q \
         && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; } >"/tmp/mcoc-apt-$$.log" 2>&1; then
    tail -n 20 "/tmp/mcoc-apt-$$.log" >&2 || true
    die "apt-get install postgresql failed (full log: /tmp/mcoc-apt-$$.log): check the apt sources and network"
  fi
  rm -f "/tmp/mcoc-apt-$$.log"
  pg_find_bin || die "postgresql installed but no /usr/lib/postgresql/*/bin/pg_ctl found: check 'dpkg -L postgresql-common'"
  say "installed PostgreSQL in $PG_BIN"
}

pg_ensure_user() {
  (( EUID == 0 )) || return 0
  if ! id -u postgres >/dev/null 2>&1; then
    say "creating system user 'postgres'"
    useradd --system --user-group --home-dir /var/lib/postgresql --no-create-home \
      --shell /bin/bash postgres || die "could not create the 'postgres' user (useradd failed)"
  fi
}

pg_reachable() { # can the server's user write the data, log and socket folders?
  local d
  for d in "$PG_DATA" "$PG_LOGDIR" "$PG_SOCK" "$PG_ARCHIVE"; do
    as_pg test -w "$d" 2>/dev/null || return 1
  done
}

pg_mkdirs() { # create and chown the folders under $PG_LINK (which may be a symlink)
  mkdir -p "$PG_DATA" "$PG_LOGDIR" "$PG_SOCK" "$PG_ARCHIVE"
  chmod 700 "$PG_DATA" "$PG_ARCHIVE"
  if (( EUID == 0 )); then
    chown postgres:postgres "$PG_LINK/" "$PG_DATA" "$PG_LOGDIR" "$PG_SOCK" "$PG_ARCHIVE"
  fi
}

pg_prepare_dirs() {
  mkdir -p "$MCOC_VAR"
  if [[ -L "$PG_LINK" ]]; then
    local target; target="$(readlink "$PG_LINK")"
    if [[ ! -d "$target" ]]; then
      warn "$PG_LINK points to $target, which is gone (was /tmp cleaned?): starting an empty cluster there"
      mkdir -p "$target"
      chmod 700 "$target"
    fi
  fi
  pg_set_paths
  pg_mkdirs
  pg_reachable && return 0
  (( EUID == 0 )) || die "cannot write $PG_LINK: check its permissions"

  # The postgres user cannot traverse a parent of $MCOC_VAR (e.g. a clone under /root).
  local hash alt
  hash="$(printf '%s' "$MCOC_VAR" | sha256sum | cut -c1-10)"
  alt="/tmp/mcoc-pg-$hash"
  if [[ -L "$PG_LINK" ]]; then
    die "postgres cannot write $(readlink "$PG_LINK") (the target of $PG_LINK): fix its permissions or remove the link"
  fi
  if [[ -f "$PG_DATA/PG_VERSION" ]]; then
    die "user postgres cannot reach $PG_LINK, which holds an existing cluster:
[infra]   make its parent folders traversable (chmod o+x), or move it: mv '$PG_LINK' '$alt' && ln -s '$alt' '$PG_LINK'"
  fi
  # Only the empty folders we just created: replace them with a link to a folder under /tmp.
  rmdir "$PG_DATA" "$PG_LOGDIR" "$PG_SOCK" "$PG_ARCHIVE" "$PG_LINK" 2>/dev/null || die "user postgres cannot reach $PG_LINK and it is not empty: fix the permissions of its parents"
  if [[ -e "$alt" ]]; then
    local owner; owner="$(stat -c %U "$alt")"
    [[ "$owner" == "postgres" || "$owner" == "root" ]] || die "$alt exists and is owned by $owner: remove it"
  fi
  mkdir -p "$alt"
  chmod 700 "$alt"
  ln -s "$alt" "$PG_LINK"
  pg_set_paths
  say "note: user postgres cannot reach $MCOC_VAR, so the cluster lives in $alt"
  say "      ($PG_LINK is a symlink to it; /tmp may be cleaned at reboot)"
  pg_mkdirs
  pg_reachable || die "user postgres still cannot write $alt: check /tmp's permissions"
}

pg_pid() { # pid of our running postmaster, or nothing
  local pid
  [[ -f "$PG_DATA/postmaster.pid" ]] || return 0
  pid="$(head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null || true)"
  if pid_alive "$pid" && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == postgres* ]]; then
    echo "$pid"
  fi
}

pg_running_port() { sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null || true; }

pg_clear_stale_pid() {
  if [[ -f "$PG_DATA/postmaster.pid" && -z "$(pg_pid)" ]]; then
    say "pg: removing stale $PG_DATA/postmaster.pid (pid $(head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null) is not our running server)"
    rm -f "$PG_DATA/postmaster.pid"
  fi
}

pg_archive_conf() {
  # WAL archiving, for point-in-time recovery from deploy/local/backup.sh's base backups: each finished segment
  # gzipped into $PG_ARCHIVE (written under a temporary name, synced, then renamed). A segment already there is never
  # overwritten: the command succeeds only when it holds the same bytes (a retry after a crash), and fails otherwise,
  # so PostgreSQL keeps the segment in pg_wal and says so in its log. Until the first backup (backup.sh writes
  # $PG_ARCHIVE/.archiving) nothing is kept: WAL older than every base backup can never be replayed, and a cluster
  # that is never backed up (tests, CI) would only fill the disk.
  if [[ "$MCOC_PG_ARCHIVE" == off ]]; then
    printf 'archive_mode = off\n'; return 0
  fi
  local cmd
  cmd="d=$(printf '%q' "$PG_ARCHIVE"); [ -f \"\$d/.archiving\" ] || exit 0; f=\"\$d/%f.gz\";"
  cmd+=' if [ -f "$f" ]; then gzip -dc "$f" | cmp -s - %p;'
  cmd+=' else gzip -1 -c %p >"$f.tmp" && sync "$f.tmp" && mv "$f.tmp" "$f"; fi'
  cmd="${cmd//\\/\\\\}"      # postgresql.conf strings take backslash escapes
  cmd="${cmd//\'/\'\'}"      # and double their single quotes
  printf 'wal_level = replica\narchive_mode = on\n'
  printf "archive_timeout = 300   # a quiet cluster's last writes reach the archive within 5 minutes\n"
  printf "archive_command = '%s'\n" "$cmd"
}

pg_write_conf() {
  # Our settings live in mcoc.conf, included from postgresql.conf, rewritten at every start.
  local q_sock="${PG_SOCK//\'/\'\'}"
  as_pg tee "$PG_DATA/mcoc.conf" >/dev/null <<EOF
# Written by deploy/local/infra.sh at every start; edits are lost.
port = $MCOC_PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$q_sock'
max_connections = 200
shared_buffers = 128MB
fsync = on
synchronous_commit = on        # durability is a product promise: keep it on
full_page_writes = on
log_min_duration_statement = 1000
log_line_prefix = '%m [%p] %q%u@%d '
$(pg_archive_conf)
EOF
  if ! grep -q "^include_if_exists = 'mcoc.conf'" "$PG_DATA/postgresql.conf"; then
    printf "\n# deploy/local/infra.sh\ninclude_if_exists = 'mcoc.conf'\n" | as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null
  fi
}

pg_psql() { # sql -> runs on the postgres database over TCP
  PGCONNECT_TIMEOUT=10 "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$MCOC_PG_PORT" -U postgres -d postgres -tA -c "$1"
}

pg_create_databases() {
  local db exists created=() dbs=()
  read -r -a dbs <<<"$MCOC_PG_DATABASES"
  for db in ${dbs[@]+"${dbs[@]}"}; do
    [[ "$db" =~ ^[a-z_][a-z0-9_]*$ ]] || die "MCOC_PG_DATABASES: '$db' is not a plain lower-case identifier"
    exists="$(pg_psql "SELECT 1 FROM pg_database WHERE datname = '$db'")" \
      || die "pg: cannot query 127.0.0.1:$MCOC_PG_PORT (see $PG_LOGFILE)"
    if [[ "$exists" != "1" ]]; then
      pg_psql "CREATE DATABASE \"$db\"" || die "pg: CREATE DATABASE $db failed (see $PG_LOGFILE)"
      created+=("$db")
    fi
  done
  if (( ${#created[@]} )); then
    say "pg: created database(s): ${created[*]}"
  fi
}

pg_start() {
  local t0 pid port
  t0="$(now_ms)"
  pg_ensure_installed
  pg_ensure_user
  pg_prepare_dirs
  pid="$(pg_pid)"
  if [[ -n "$pid" ]]; then
    port="$(pg_running_port)"
    say "pg: already running (pid $pid, 127.0.0.1:$port)"
    if [[ "$port" != "$MCOC_PG_PORT" ]]; then
      die "pg: our cluster runs on port $port but MCOC_PG_PORT=$MCOC_PG_PORT: run '$0 stop pg' then start again"
    fi
  else
    pg_clear_stale_pid
    require_port_free "$MCOC_PG_PORT" MCOC_PG_PORT "PostgreSQL"
    if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
      if [[ -n "$(ls -A "$PG_DATA")" ]]; then
        die "pg: $PG_DATA is not empty but holds no cluster (an interrupted initdb?): remove it and start again"
      fi
      say "pg: initdb $PG_DATA ($("$PG_BIN/postgres" --version))"
      if ! as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
           >"$PG_LOGDIR/initdb.log" 2>&1; then
        tail -n 20 "$PG_LOGDIR/initdb.log" >&2 || true
        die "pg: initdb failed (log: $PG_LOGDIR/initdb.log); remove $PG_DATA before retrying"
      fi
    fi
    pg_write_conf
    say "pg: starting on 127.0.0.1:$MCOC_PG_PORT (log: $PG_LOGFILE)"
    if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOGFILE" -w -t 60 start >/dev/null; then
      tail -n 30 "$PG_LOGFILE" >&2 || true
      die "pg: failed to start; read $PG_LOGFILE above, fix the cause, then run '$0 start pg'"
    fi
    pid="$(pg_pid)"
    say "pg: started (pid $pid) in $(elapsed "$t0")"
  fi
  pg_create_databases
  say "pg: ready: postgresql://postgres@127.0.0.1:$MCOC_PG_PORT/ databases: ${MCOC_PG_DATABASES:-(none)}"
}

pg_stop() {
  local pid t0
  if [[ ! -d "$PG_DATA" ]]; then
    say "pg: stopped (no cluster in $PG_LINK)"; return 0
  fi
  pid="$(pg_pid)"
  if [[ -z "$pid" ]]; then
    pg_clear_stale_pid
    say "pg: already stopped"; return 0
  fi
  pg_find_bin || die "pg: running (pid $pid) but pg_ctl not found: kill -INT $pid"
  t0="$(now_ms)"
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null \
    || die "pg: pg_ctl stop failed (pid $pid); see $PG_LOGFILE, or kill -INT $pid"
  say "pg: stopped (was pid $pid) in $(elapsed "$t0")"
}

pg_status() {
  local pid
  pid="$( [[ -d "$PG_DATA" ]] && pg_pid || true)"
  if [[ -n "$pid" ]]; then
    say "pg: running (pid $pid, 127.0.0.1:$(pg_running_port), data $PG_DATA)"
    return 0
  fi
  if [[ -f "$PG_DATA/postmaster.pid" ]]; then
    say "pg: stopped (stale postmaster.pid; 'start pg' will clear it)"
  else
    say "pg: stopped"
  fi
  return 3
}

# --- Kafka -------------------------------------------------------------------------------------

kafka_pid() { # pid of our running broker, or nothing
  local pid
  [[ -f "$KAFKA_PID_FILE" ]] || return 0
  pid="$(head -n1 "$KAFKA_PID_FILE" 2>/dev/null || true)"
  if pid_alive "$pid" && [[ "$(proc_cmdline "$pid")" == *"kafka.Kafka $KAFKA_PROPS"* ]]; then
    echo "$pid"
  fi
}

kafka_clear_stale_pid() {
  if [[ -f "$KAFKA_PID_FILE" && -z "$(kafka_pid)" ]]; then
    say "kafka: removing stale $KAFKA_PID_FILE (pid $(head -n1 "$KAFKA_PID_FILE" 2>/dev/null) is not our running broker)"
    rm -f "$KAFKA_PID_FILE"
  fi
}

kafka_check_python() {
  [[ -x "$PYTHON" ]] || die "Python not found at $PYTHON (needed for kafka_ready.py): run \`make install\` first (or set PYTHON=...)"
  "$PYTHON" -c 'import aiokafka' 2>/dev/null \
    || die "$PYTHON cannot import aiokafka: run \`make install\` first"
}

kafka_check_java() {
  command -v java >/dev/null 2>&1 || die "java not found: apt-get install -y openjdk-17-jre-headless"
}

kafka_fetch_jars() {
  [[ -f "$KAFKA_LIBS/.complete" ]] && return 0
  command -v mvn >/dev/null 2>&1 || die "mvn not found (needed once to fetch the Kafka jars): apt-get install -y maven"
  local t0 mvnlog
  t0="$(now_ms)"
  mkdir -p "$KAFKA_LOGS"
  mvnlog="$KAFKA_LOGS/mvn-fetch.log"
  say "kafka: fetching Kafka $MCOC_KAFKA_VERSION jars from Maven Central (first run only, ~10 s)"
  rm -rf "$KAFKA_LIBS"
  if ! mvn -B -q -f "$KAFKA_POM" \
        org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS" \
        -Dkafka.version="$MCOC_KAFKA_VERSION" >"$mvnlog" 2>&1; then
    tail -n 20 "$mvnlog" >&2 || true
    rm -rf "$KAFKA_LIBS"
    die "kafka: fetching the jars failed (log: $mvnlog). Check: network access to Maven Central
[infra]   (repo.maven.apache.org, or a mirror in ~/.m2/settings.xml), 'mvn -v' works, and that
[infra]   MCOC_KAFKA_VERSION=$MCOC_KAFKA_VERSION exists as org.apache.kafka:kafka_2.13"
  fi
  ls "$KAFKA_LIBS"/kafka_2.13-*.jar >/dev/null 2>&1 || die "kafka: mvn succeeded but $KAFKA_LIBS has no kafka_2.13 jar (log: $mvnlog)"
  touch "$KAFKA_LIBS/.complete"
  say "kafka: $(ls "$KAFKA_LIBS"/*.jar | wc -l) jars, $(du -sh "$KAFKA_LIBS" | cut -f1) in $KAFKA_LIBS ($(elapsed "$t0"))"
}

kafka_write_props() {
  cat >"$KAFKA_PROPS.tmp" <<EOF
# Written by deploy/local/infra.sh at every start; edits are lost.
# Single combined KRaft node (broker + controller), static quorum, 127.0.0.1 only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$MCOC_KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$MCOC_KAFKA_PORT,CONTROLLER://127.0.0.1:$MCOC_KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$MCOC_KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$KAFKA_DATA
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Short broker session: a broker restarted after SIGKILL is accepted after ~3 s, not ~9 s.
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=1000
# Topics are created explicitly, with their partition counts; a typo must fail loudly.
auto.create.topics.enable=false
num.partitions=3
log.retention.hours=168
EOF
  mv "$KAFKA_PROPS.tmp" "$KAFKA_PROPS"
}

kafka_java_opts=()
kafka_set_java_opts() {
  kafka_java_opts=(
    "-Dlog4j2.configurationFile=$KAFKA_LOG4J"
    "-Dkafka.logs.dir=$KAFKA_LOGS"
    -Djava.awt.headless=true
  )
}

kafka_format() {
  [[ -f "$KAFKA_DATA/meta.properties" ]] && return 0
  local t0 id
  t0="$(now_ms)"
  mkdir -p "$KAFKA_DATA"
  if [[ -n "$(ls -A "$KAFKA_DATA")" ]]; then
    die "kafka: $KAFKA_DATA has files but no meta.properties: remove it (its data is lost) and start again"
  fi
  id="$(java "${kafka_java_opts[@]}" -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid 2>>"$KAFKA_LOGS/format.log" | tail -n1)" \
    || die "kafka: StorageTool random-uuid failed (see $KAFKA_LOGS/format.log)"
  [[ -n "$id" ]] || die "kafka: StorageTool random-uuid printed nothing (see $KAFKA_LOGS/format.log)"
  if ! java "${kafka_java_opts[@]}" -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool format \
        -t "$id" -c "$KAFKA_PROPS" >>"$KAFKA_LOGS/format.log" 2>&1; then
    tail -n 20 "$KAFKA_LOGS/format.log" >&2 || true
    die "kafka: formatting $KAFKA_DATA failed (log: $KAFKA_LOGS/format.log)"
  fi
  say "kafka: formatted $KAFKA_DATA (cluster id $id) in $(elapsed "$t0")"
}

file_size() { stat -c %s "$1" 2>/dev/null || echo 0; }
KAFKA_CONSOLE_OFFSET=0
KAFKA_SERVER_OFFSET=0
kafka_mark_logs() { # remember where this attempt's log lines begin
  KAFKA_CONSOLE_OFFSET="$(file_size "$KAFKA_LOGS/console.log")"
  KAFKA_SERVER_OFFSET="$(file_size "$KAFKA_LOGS/server.log")"
}

kafka_show_log() { # file offset: the last 30 lines written since offset (or the last 30 lines)
  local file="$1" off="$2"
  [[ -f "$file" ]] || { printf '[infra] ---- %s: no such file ----\n' "$file" >&2; return 0; }
  printf '[infra] ---- %s (last 30 lines of this start) ----\n' "$file" >&2
  if (( $(file_size "$file") > off )); then
    tail -c "+$(( off + 1 ))" "$file" | tail -n 30 >&2 || true
  else
    printf '[infra] (nothing written since this start)\n' >&2
  fi
}

kafka_wait_ready() { # pid t0
  local pid="$1" t0="$2" rc=0
  printf '[infra] kafka: waiting for a metadata response '
  "$PYTHON" "$SCRIPT_DIR/kafka_ready.py" --bootstrap "127.0.0.1:$MCOC_KAFKA_PORT" \
    --timeout 60 --pid "$pid" --quiet || rc=$?
  if (( rc == 0 )); then
    say "kafka: ready on 127.0.0.1:$MCOC_KAFKA_PORT (pid $pid) after $(elapsed "$t0")"
    return 0
  fi
  kafka_show_log "$KAFKA_LOGS/console.log" "$KAFKA_CONSOLE_OFFSET"
  kafka_show_log "$KAFKA_LOGS/server.log" "$KAFKA_SERVER_OFFSET"
  if (( rc == 2 )); then
    rm -f "$KAFKA_PID_FILE"
    die "kafka: the broker exited during startup (logs above); fix the cause, then run '$0 start kafka'"
  fi
  die "kafka: not ready after 60 s (pid $pid still running; logs above). Check the logs, then
[infra]   '$0 stop kafka' and '$0 start kafka'"
}

kafka_start() {
  local t0 pid
  t0="$(now_ms)"
  kafka_check_python
  kafka_check_java
  mkdir -p "$KAFKA_DIR" "$KAFKA_LOGS"
  kafka_set_java_opts
  kafka_mark_logs
  pid="$(kafka_pid)"
  if [[ -n "$pid" ]]; then
    say "kafka: already running (pid $pid); checking readiness"
    kafka_wait_ready "$pid" "$t0"
    return 0
  fi
  kafka_clear_stale_pid
  require_port_free "$MCOC_KAFKA_PORT" MCOC_KAFKA_PORT "Kafka broker"
  require_port_free "$MCOC_KAFKA_CONTROLLER_PORT" MCOC_KAFKA_CONTROLLER_PORT "Kafka controller"
  kafka_fetch_jars
  kafka_write_props
  kafka_format
  say "kafka: starting Kafka $MCOC_KAFKA_VERSION on 127.0.0.1:$MCOC_KAFKA_PORT (controller :$MCOC_KAFKA_CONTROLLER_PORT, heap $MCOC_KAFKA_HEAP; logs: $KAFKA_LOGS)"
  t0="$(now_ms)"
  kafka_mark_logs
  printf '\n==== %s infra.sh start kafka ====\n' "$(date -Is)" >>"$KAFKA_LOGS/console.log"
  # setsid: the broker gets its own session, like pg_ctl's postmaster, so it outlives this shell.
  # -Xms256m, or the whole heap when MCOC_KAFKA_HEAP is smaller.
  local xms="256m" heap_mb n="${MCOC_KAFKA_HEAP%[kKmMgG]}"
  case "$MCOC_KAFKA_HEAP" in
    *[gG]) heap_mb=$(( n * 1024 )) ;; *[mM]) heap_mb=$n ;; *[kK]) heap_mb=$(( n / 1024 )) ;; *) heap_mb=$(( n / 1048576 )) ;;
  esac
  (( heap_mb >= 256 )) || xms="$MCOC_KAFKA_HEAP"
  (cd "$KAFKA_DIR" && exec nohup setsid java "-Xmx$MCOC_KAFKA_HEAP" "-Xms$xms" \
      -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
      "${kafka_java_opts[@]}" -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_PROPS" \
      >>"$KAFKA_LOGS/console.log" 2>&1 </dev/null) &
  pid=$!
  echo "$pid" >"$KAFKA_PID_FILE"
  kafka_wait_ready "$pid" "$t0"
}

kafka_stop() {
  local pid i t0
  pid="$(kafka_pid)"
  if [[ -z "$pid" ]]; then
    kafka_clear_stale_pid
    say "kafka: already stopped"; return 0
  fi
  t0="$(now_ms)"
  say "kafka: stopping (pid $pid, SIGTERM)"
  kill -TERM "$pid" 2>/dev/null || true
  for (( i = 0; i < 200; i++ )); do
    pid_alive "$pid" || break
    sleep 0.1
  done
  if pid_alive "$pid"; then
    warn "kafka: still running after 20 s: sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for (( i = 0; i < 50; i++ )); do pid_alive "$pid" || break; sleep 0.1; done
    pid_alive "$pid" && die "kafka: pid $pid survives SIGKILL: investigate with 'ps -o pid,stat,cmd -p $pid'"
  fi
  rm -f "$KAFKA_PID_FILE"
  say "kafka: stopped in $(elapsed "$t0")"
}

kafka_kill() {
  local pid i
  pid="$(kafka_pid)"
  if [[ -z "$pid" ]]; then
    kafka_clear_stale_pid
    say "kafka: not running; nothing to kill"; return 0
  fi
  kill -KILL "$pid" 2>/dev/null || true
  for (( i = 0; i < 50; i++ )); do pid_alive "$pid" || break; sleep 0.1; done
  pid_alive "$pid" && die "kafka: pid $pid survives SIGKILL"
  rm -f "$KAFKA_PID_FILE"
  say "kafka: killed pid $pid with SIGKILL (data kept; '$0 start kafka' brings it back)"
}

kafka_status() {
  local pid
  pid="$(kafka_pid)"
  if [[ -n "$pid" ]]; then
    say "kafka: running (pid $pid, 127.0.0.1:$MCOC_KAFKA_PORT, controller :$MCOC_KAFKA_CONTROLLER_PORT, data $KAFKA_DATA)"
    return 0
  fi
  if [[ -f "$KAFKA_PID_FILE" ]]; then
    say "kafka: stopped (stale kafka.pid; 'start kafka' will clear it)"
  else
    say "kafka: stopped"
  fi
  return 3
}

# --- main --------------------------------------------------------------------------------------

main() {
  local cmd="${1:-}" target="${2:-all}" rc=0
  case "$cmd" in
    -h|--help|help) usage; exit 0 ;;
    "") usage >&2; exit 1 ;;
  esac
  (( $# <= 2 )) || { usage >&2; exit 1; }
  case "$target" in
    pg|kafka|all) ;;
    *) usage >&2; die "unknown target '$target' (expected pg, kafka or all)" ;;
  esac
  check_port_value MCOC_PG_PORT "$MCOC_PG_PORT"
  check_port_value MCOC_KAFKA_PORT "$MCOC_KAFKA_PORT"
  check_port_value MCOC_KAFKA_CONTROLLER_PORT "$MCOC_KAFKA_CONTROLLER_PORT"
  [[ "$MCOC_KAFKA_PORT" != "$MCOC_KAFKA_CONTROLLER_PORT" ]] || die "MCOC_KAFKA_PORT and MCOC_KAFKA_CONTROLLER_PORT must differ"
  [[ "$MCOC_PG_ARCHIVE" == on || "$MCOC_PG_ARCHIVE" == off ]] || die "MCOC_PG_ARCHIVE='$MCOC_PG_ARCHIVE': expected on or off"
  [[ "$MCOC_KAFKA_HEAP" =~ ^[0-9]+[kKmMgG]?$ ]] || die "MCOC_KAFKA_HEAP='$MCOC_KAFKA_HEAP' is not a java heap size (e.g. 768m, 1g)"
  [[ "$MCOC_KAFKA_VERSION" =~ ^[0-9A-Za-z._-]+$ ]] || die "MCOC_KAFKA_VERSION='$MCOC_KAFKA_VERSION' is not a version"

  case "$cmd" in
    start)
      [[ "$target" == kafka ]] || pg_start
      [[ "$target" == pg ]] || kafka_start
      ;;
    stop)
      [[ "$target" == pg ]] || kafka_stop
      [[ "$target" == kafka ]] || pg_stop
      ;;
    status)
      if [[ "$target" != kafka ]]; then pg_status || rc=$?; fi
      if [[ "$target" != pg ]]; then kafka_status || rc=$?; fi
      exit "$rc"
      ;;
    kill-kafka)
      [[ "$target" == all || "$target" == kafka ]] || die "kill-kafka takes no target"
      kafka_kill
      ;;
    *) usage >&2; die "unknown command '$cmd'" ;;
  esac
}

main "$@"
