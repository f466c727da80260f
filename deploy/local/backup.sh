#!/usr/bin/env bash
# Backups of the local PostgreSQL cluster (deploy/local/infra.sh's: the three services' databases) and
# point-in-time recovery into a fresh cluster. See docs/operations.md#backups.
#
# Usage: deploy/local/backup.sh backup [DIR]                 a base backup into DIR (default: $MCOC_BACKUPS/<UTC time>)
#        deploy/local/backup.sh list                         the backups in $MCOC_BACKUPS and the WAL archive
#        deploy/local/backup.sh restore [--until TIME] DIR   a fresh cluster from DIR, the archived WAL replayed up to
#                                                            TIME ('2026-12-06 10:00:00+00') or to its end
#        deploy/local/backup.sh prune --keep N               delete all but the newest N backups in $MCOC_BACKUPS, and
#                                                            the archived WAL older than the oldest one kept
#
# A backup is a folder: base.tar.gz and pg_wal.tar.gz (pg_basebackup's tar format, gzipped), backup_manifest
# (pg_basebackup's, with a checksum per file) and manifest.json (when, size, the databases, the PostgreSQL version,
# the cluster's system identifier). WAL between backups is archived by the server itself (infra.sh's archive_command,
# into $MCOC_VAR/pg/wal-archive); a restore replays it. The cluster restore replaces is moved aside, never deleted.
#
# Environment (defaults): MCOC_VAR (<repo>/var), MCOC_PG_PORT (5433), MCOC_BACKUPS ($MCOC_VAR/backups),
#   MCOC_RESTORE_TIMEOUT_S (600: the longest a restore waits for the WAL to be replayed).
# Exit codes: 0 ok; 1 on errors, each saying what to do next.
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/../.." && pwd -P)"
INFRA="$SCRIPT_DIR/infra.sh"

MCOC_VAR="${MCOC_VAR:-$REPO_ROOT/var}"
case "$MCOC_VAR" in /*) ;; *) MCOC_VAR="$PWD/$MCOC_VAR" ;; esac
MCOC_VAR="${MCOC_VAR%/}"
export MCOC_VAR
MCOC_PG_PORT="${MCOC_PG_PORT:-5433}"
MCOC_BACKUPS="${MCOC_BACKUPS:-$MCOC_VAR/backups}"
MCOC_RESTORE_TIMEOUT_S="${MCOC_RESTORE_TIMEOUT_S:-600}"

say()  { printf '[backup] %s\n' "$*"; }
warn() { printf '[backup] WARNING: %s\n' "$*" >&2; }
die()  { printf '[backup] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
  cat <<EOF
usage: deploy/local/backup.sh backup [DIR]                 a base backup (default DIR: \$MCOC_BACKUPS/<UTC time>)
       deploy/local/backup.sh list                         the backups and the WAL archive
       deploy/local/backup.sh restore [--until TIME] DIR   a fresh cluster from DIR, WAL replayed to TIME or the end
       deploy/local/backup.sh prune --keep N               all but the newest N backups deleted, and older WAL
env:   MCOC_VAR=$MCOC_VAR MCOC_PG_PORT=$MCOC_PG_PORT
       MCOC_BACKUPS=$MCOC_BACKUPS MCOC_RESTORE_TIMEOUT_S=$MCOC_RESTORE_TIMEOUT_S
EOF
}

# --- the cluster's paths, as infra.sh lays them out ------------------------------------------------

PG_LINK="$MCOC_VAR/pg"
PG_BASE="$PG_LINK"
[[ -L "$PG_LINK" ]] && PG_BASE="$(readlink "$PG_LINK")"
PG_DATA="$PG_BASE/data"
PG_ARCHIVE="$PG_BASE/wal-archive"
PG_LOGFILE="$PG_BASE/log/postgres.log"

as_pg() { # run a command as the postgres user (or as ourselves when not root), from /
  if (( EUID == 0 )); then (cd / && runuser -u postgres -- "$@"); else (cd / && "$@"); fi
}

pg_bin_for() { # major -> its bin folder, or nothing
  [[ -x "/usr/lib/postgresql/$1/bin/pg_ctl" ]] && echo "/usr/lib/postgresql/$1/bin"
  return 0
}

client_bin() { # the newest installed client tools
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
  [[ -n "$d" && -x "$d/pg_basebackup" ]] || die "PostgreSQL's tools are not installed: run 'deploy/local/infra.sh start pg' (it installs them)"
  echo "$d"
}

psql_pg() { # sql -> one value per line, from the postgres database
  PGCONNECT_TIMEOUT=10 "$(client_bin)/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$MCOC_PG_PORT" -U postgres \
    -d postgres -tA -c "$1"
}

pg_up() { psql_pg "SELECT 1" >/dev/null 2>&1; }

json_get() { # file key -> value (strings bare)
  python3 -c 'import json,sys; v=json.load(open(sys.argv[1])).get(sys.argv[2]); print("" if v is None else v)' "$1" "$2"
}

epoch_of() { # a time PostgreSQL and GNU date both read -> seconds since 1970
  date -u -d "$1" +%s 2>/dev/null
}

human() { numfmt --to=iec --suffix=B "$1" 2>/dev/null || echo "$1 B"; }

# --- backup ------------------------------------------------------------------------------------

cmd_backup() {
  local dir="${1:-$MCOC_BACKUPS/$(date -u +%Y%m%dT%H%M%SZ)}" bin started partial t0 size archive_mode
  pg_up || die "PostgreSQL is not answering on 127.0.0.1:$MCOC_PG_PORT: start it ('make infra'), then back up"
  [[ -e "$dir" && -n "$(ls -A "$dir" 2>/dev/null)" ]] && die "$dir exists and is not empty: name another folder"
  bin="$(client_bin)"
  archive_mode="$(psql_pg "SHOW archive_mode")"
  if [[ "$archive_mode" != on ]]; then
    warn "WAL archiving is off on this cluster (started before it was configured, or MCOC_PG_ARCHIVE=off):
[backup]   this backup restores to its own end only, not to a later time. Restart PostgreSQL to turn it on:
[backup]   deploy/local/services.sh stop && deploy/local/infra.sh stop pg && make up"
  fi
  if [[ "$archive_mode" == on && ! -f "$PG_ARCHIVE/.archiving" ]]; then
    # infra.sh's archive_command keeps WAL from the first backup on (before it, none could ever be replayed).
    touch "$PG_ARCHIVE/.archiving"
    say "WAL archiving into $PG_ARCHIVE begins with this backup"
  fi
  partial="$dir.partial"
  rm -rf "$partial"
  mkdir -p "$partial"
  started="$(date -u '+%Y-%m-%d %H:%M:%S+00')"
  t0="$(date +%s)"
  say "base backup of 127.0.0.1:$MCOC_PG_PORT into $dir (pg_basebackup, tar, gzip)"
  "$bin/pg_basebackup" -h 127.0.0.1 -p "$MCOC_PG_PORT" -U postgres -D "$partial" -Ft -z -X stream \
    --checkpoint=fast -l "deploy/local/backup.sh $started" --progress 2>"$partial.log" &
  local pid=$! last i=0
  while kill -0 "$pid" 2>/dev/null; do  # its progress, every 2 s
    sleep 0.2
    (( ++i % 10 )) && continue
    last="$(tr '\r' '\n' <"$partial.log" | grep -v '^$' | tail -n 1 || true)"
    [[ -z "$last" ]] || say "  pg_basebackup: $last"
  done
  if ! wait "$pid"; then
    tail -n 20 "$partial.log" >&2 || true
    rm -rf "$partial" "$partial.log"
    die "pg_basebackup failed (above): check that the disk has room for $dir and that the server accepts replication connections"
  fi
  tr '\r' '\n' <"$partial.log" | grep -v '^$' | tail -n 1 | sed 's/^/[backup]   pg_basebackup: /' || true
  mv "$partial.log" "$partial/pg_basebackup.log"
  # The manifest: what is in the backup, and from when on it can be the start of a recovery.
  "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$MCOC_PG_PORT" -U postgres -d postgres -tA \
    -v started="$started" >"$partial/manifest.json" <<'SQL'
SELECT json_build_object(
  'format', 1,
  'started_at', :'started',
  'finished_at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US+00'),
  'pg_version', current_setting('server_version'),
  'pg_major', current_setting('server_version_num')::int / 10000,
  'system_identifier', (SELECT system_identifier::text FROM pg_control_system()),
  'archive_mode', current_setting('archive_mode'),
  'databases', (SELECT json_object_agg(datname, pg_database_size(datname) ORDER BY datname)
                FROM pg_database WHERE NOT datistemplate)
)
SQL
  mv "$partial" "$dir"
  size="$(du -sb "$dir" | cut -f1)"
  python3 - "$dir/manifest.json" "$size" <<'PY'
import json, sys
path, size = sys.argv[1], int(sys.argv[2])
m = json.load(open(path))
m["size_bytes"] = size
open(path, "w").write(json.dumps(m, indent=2) + "\n")
PY
  say "done in $(( $(date +%s) - t0 )) s: $(human "$size") (databases: $(python3 -c 'import json,sys; print(", ".join(json.load(open(sys.argv[1]))["databases"]))' "$dir/manifest.json"))"
  say "restore it with: make restore BACKUP=$dir [UNTIL='<a time after $(json_get "$dir/manifest.json" finished_at)>']"
}

# --- list --------------------------------------------------------------------------------------

cmd_list() {
  local d n=0
  say "backups in $MCOC_BACKUPS:"
  for d in "$MCOC_BACKUPS"/*/; do
    d="${d%/}"
    [[ -f "$d/manifest.json" ]] || continue
    n=$(( n + 1 ))
    python3 - "$d" <<'PY'
import json, os, sys
d = sys.argv[1]
m = json.load(open(os.path.join(d, "manifest.json")))
size = m.get("size_bytes", 0)
print(f"[backup]   {d}  finished {m['finished_at']}  {size / 1e6:.1f} MB  PostgreSQL {m['pg_version']}"
      f"  databases: {', '.join(m['databases'])}")
PY
  done
  (( n )) || say "  (none: 'make backup' takes one)"
  if [[ -d "$PG_ARCHIVE" ]]; then
    local count first last
    count="$(find "$PG_ARCHIVE" -maxdepth 1 -name '*.gz' | wc -l)"
    first="$(ls "$PG_ARCHIVE" | grep -E '^[0-9A-F]{24}\.gz$' | head -n1 || true)"
    last="$(ls "$PG_ARCHIVE" | grep -E '^[0-9A-F]{24}\.gz$' | tail -n1 || true)"
    say "WAL archive $PG_ARCHIVE: $count files, $(du -sh "$PG_ARCHIVE" | cut -f1)${first:+, segments ${first%.gz} to ${last%.gz}}"
  else
    say "no WAL archive ($PG_ARCHIVE): start PostgreSQL with deploy/local/infra.sh to begin one"
  fi
}

# --- prune -------------------------------------------------------------------------------------

start_segment() { # backup dir -> the first WAL segment it needs (its backup_label's)
  tar -xzOf "$1/base.tar.gz" backup_label 2>/dev/null | sed -n 's/^START WAL LOCATION: .* (file \([0-9A-F]\{24\}\))$/\1/p'
}

cmd_prune() {
  local keep="" d segment n i
  while (( $# )); do
    case "$1" in
      --keep) (( $# >= 2 )) || die "--keep needs a number of backups"; keep="$2"; shift 2 ;;
      *) usage >&2; die "unknown argument $1" ;;
    esac
  done
  [[ "$keep" =~ ^[0-9]+$ ]] && (( keep >= 1 )) || die "prune needs --keep N, N at least 1: how many of the newest backups to keep"
  local -a all=()
  # Oldest first, by when each ended (the folder names need not be times).
  while IFS=$'\t' read -r _ d; do all+=("$d"); done < <(
    for d in "$MCOC_BACKUPS"/*/; do
      d="${d%/}"
      [[ -f "$d/manifest.json" ]] && printf '%s\t%s\n' "$(epoch_of "$(json_get "$d/manifest.json" finished_at)")" "$d"
    done | sort -n
  )
  n=${#all[@]}
  if (( n <= keep )); then
    say "$n backup(s) in $MCOC_BACKUPS, keeping $keep: nothing to delete"
  fi
  (( n )) || return 0
  local oldest="${all[$(( n > keep ? n - keep : 0 ))]}"
  segment="$(start_segment "$oldest")"
  [[ -n "$segment" ]] || die "cannot read the first WAL segment of $oldest (backup_label in base.tar.gz): nothing deleted"
  for (( i = 0; i < n - keep; i++ )); do
    rm -rf -- "${all[$i]}"
    say "deleted ${all[$i]}"
  done
  if [[ -d "$PG_ARCHIVE" ]]; then
    local before after
    before="$(du -sh "$PG_ARCHIVE" | cut -f1)"
    "$(client_bin)/pg_archivecleanup" -x .gz "$PG_ARCHIVE" "$segment"
    after="$(du -sh "$PG_ARCHIVE" | cut -f1)"
    say "WAL archive: segments before $segment (the oldest kept backup's first) deleted: $before -> $after"
  fi
  say "copies of backups elsewhere are not touched: keep those as long as the records must be (five years)"
}

# --- restore -----------------------------------------------------------------------------------

services_running() { # the local services (deploy/local/services.sh) whose pid is alive
  local svc pid
  for svc in registry custody audit; do
    pid="$(cat "$MCOC_VAR/run/$svc.pid" 2>/dev/null || true)"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && printf '%s (pid %s) ' "$svc" "$pid"
  done
  return 0
}

wait_archived() { # make the server archive the WAL written so far; wait until it has
  local seg i last failed
  seg="$(psql_pg "SELECT pg_walfile_name(pg_switch_wal())")"
  for (( i = 0; i < 300; i++ )); do
    read -r last failed <<<"$(psql_pg "SELECT coalesce(last_archived_wal, '-'), coalesce(last_failed_wal, '-') FROM pg_stat_archiver" | tr '|' ' ')"
    # Segment names of one timeline sort as they are written.
    [[ "$last" != "-" && ! "$last" < "$seg" ]] && return 0
    sleep 0.2
  done
  die "the server has not archived its WAL up to $seg after 60 s (last archived: $last, last failed: $failed):
[backup]   read $PG_LOGFILE (archive_command's errors), fix the cause (disk full?), then restore again"
}

cmd_restore() {
  local until="" dir="" major bin stamp newdata aside sysid cur_sysid running conns until_s finished_s f t0 state i
  while (( $# )); do
    case "$1" in
      --until) (( $# >= 2 )) || die "--until needs a time, e.g. --until '2026-12-06 10:00:00+00'"; until="$2"; shift 2 ;;
      --until=*) until="${1#--until=}"; shift ;;
      -*) usage >&2; die "unknown option $1" ;;
      *) [[ -z "$dir" ]] || { usage >&2; die "one backup folder, please"; }; dir="$1"; shift ;;
    esac
  done
  [[ -n "$dir" ]] || { usage >&2; die "which backup? 'deploy/local/backup.sh list' shows them"; }
  dir="${dir%/}"
  [[ -f "$dir/manifest.json" && -f "$dir/base.tar.gz" ]] \
    || die "no such backup: $dir (a backup folder holds manifest.json and base.tar.gz; 'deploy/local/backup.sh list' shows them)"

  major="$(json_get "$dir/manifest.json" pg_major)"
  bin="$(pg_bin_for "$major")"
  [[ -n "$bin" ]] || die "the backup is PostgreSQL $(json_get "$dir/manifest.json" pg_version) and PostgreSQL $major is not installed here
[backup]   (installed: $(ls /usr/lib/postgresql 2>/dev/null | tr '\n' ' ')): install it (apt-get install postgresql-$major) and restore again;
[backup]   a base backup restores only into its own major version (to move on, restore, then pg_dump/pg_upgrade)"

  finished_s="$(epoch_of "$(json_get "$dir/manifest.json" finished_at)")"
  if [[ -n "$until" ]]; then
    until_s="$(epoch_of "$until")" || die "--until '$until' is not a time: write it as '2026-12-06 10:00:00+00' (UTC) or with another offset"
    (( until_s >= finished_s )) || die "--until $until is before this backup ended ($(json_get "$dir/manifest.json" finished_at)):
[backup]   restore an earlier backup ('deploy/local/backup.sh list'), or ask for a later time"
    (( until_s <= $(date +%s) )) || die "--until $until is in the future: leave --until out to replay everything archived"
  fi

  running="$(services_running)"
  [[ -z "$running" ]] || die "the services are still running: ${running% }: stop them first (deploy/local/services.sh stop), then restore again"

  stamp="$(date -u +%Y%m%dT%H%M%SZ)"
  t0="$(date +%s)"
  sysid="$(json_get "$dir/manifest.json" system_identifier)"
  if pg_up; then
    conns="$(psql_pg "SELECT string_agg(DISTINCT datname || ' (' || coalesce(nullif(application_name, ''), client_addr::text, 'local') || ')', ', ') FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")"
    [[ -z "$conns" ]] || die "PostgreSQL still has clients: $conns:
[backup]   stop them first (deploy/local/services.sh stop; tests or shells of yours), then restore again"
    if [[ "$(psql_pg "SHOW archive_mode")" == on ]]; then
      say "archiving the last WAL of the running cluster"
      wait_archived
    fi
    say "stopping PostgreSQL"
    "$INFRA" stop pg | sed 's/^/  /'
  fi

  # The fresh cluster: the backup's files, its WAL, then the current cluster's unarchived WAL (if of the same system).
  [[ -d "$PG_BASE" ]] || mkdir -p "$PG_BASE"
  newdata="$PG_BASE/data.restoring-$stamp"
  mkdir -p "$newdata"
  chmod 700 "$newdata"
  say "unpacking $dir/base.tar.gz ($(human "$(stat -c %s "$dir/base.tar.gz")")) into $newdata"
  tar -xzf "$dir/base.tar.gz" -C "$newdata"
  mkdir -p "$newdata/pg_wal"
  [[ -f "$dir/pg_wal.tar.gz" ]] && tar -xzf "$dir/pg_wal.tar.gz" -C "$newdata/pg_wal"
  if [[ -f "$PG_DATA/global/pg_control" ]]; then
    cur_sysid="$("$bin/pg_controldata" "$PG_DATA" 2>/dev/null | sed -n 's/^Database system identifier: *//p' || true)"
    if [[ "$cur_sysid" == "$sysid" ]]; then
      for f in "$PG_DATA"/pg_wal/*; do
        f="$(basename "$f")"
        [[ "$f" =~ ^[0-9A-F]{24}$|^[0-9A-F]{8}\.history$ && ! -e "$newdata/pg_wal/$f" ]] || continue
        cp -p "$PG_DATA/pg_wal/$f" "$newdata/pg_wal/"
      done
    else
      warn "the current cluster is not the one backed up (system $cur_sysid, the backup's $sysid): its WAL is not replayed"
    fi
  fi
  [[ -d "$PG_ARCHIVE" ]] || warn "no WAL archive at $PG_ARCHIVE: the restore ends where the backup ended"
  touch "$newdata/recovery.signal"
  local q_archive
  q_archive="$(printf '%q' "$PG_ARCHIVE")"
  q_archive="${q_archive//\\/\\\\}"; q_archive="${q_archive//\'/\'\'}"
  {
    printf "\n# deploy/local/backup.sh restore %s (removed once recovered)\n" "$dir"
    printf "restore_command = 'f=%s/%%f.gz; [ -f \"\$f\" ] && gzip -dc \"\$f\" >%%p'\n" "$q_archive"
    printf "recovery_target_action = 'promote'\n"
    [[ -n "$until" ]] && printf "recovery_target_time = '%s'\n" "${until//\'/\'\'}"
  } >>"$newdata/postgresql.auto.conf"
  rm -f "$newdata/postmaster.pid" "$newdata/postmaster.opts"
  (( EUID == 0 )) && chown -R postgres:postgres "$newdata"

  aside=""
  if [[ -d "$PG_DATA" ]]; then
    aside="$PG_BASE/data.before-restore-$stamp"
    mv "$PG_DATA" "$aside"
    say "the cluster you had is kept in $aside (delete it once you are content with the restore)"
  fi
  mv "$newdata" "$PG_DATA"
  local back="to go back to the cluster you had: deploy/local/infra.sh stop pg; mv '$PG_DATA' '$PG_BASE/data.failed-$stamp'${aside:+; mv '$aside' '$PG_DATA'}; deploy/local/infra.sh start pg"

  say "starting PostgreSQL on the restored cluster; replaying WAL $(if [[ -n "$until" ]]; then echo "up to $until"; else echo "to the end of the archive"; fi)"
  if ! MCOC_PG_DATABASES="" "$INFRA" start pg | sed 's/^/  /'; then
    die "PostgreSQL did not start on the restored cluster (above; log: $PG_LOGFILE).
[backup]   $back"
  fi
  for (( i = 0; ; i++ )); do
    state="$(psql_pg "SELECT pg_is_in_recovery()::text || ' ' || coalesce(pg_last_wal_replay_lsn()::text, '-') || ' ' || coalesce(to_char(pg_last_xact_replay_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), '-')" 2>/dev/null || echo "down")"
    case "$state" in
      false*) break ;;
      down)
        tail -n 20 "$PG_LOGFILE" >&2 || true
        die "the server stopped during recovery (log above: a time past the end of the archived WAL? a segment missing?).
[backup]   $back" ;;
    esac
    (( i % 10 == 0 )) && say "  replaying: at $(cut -d' ' -f2 <<<"$state"), last transaction $(cut -d' ' -f3- <<<"$state")"
    (( i < MCOC_RESTORE_TIMEOUT_S * 2 )) || die "still replaying after $MCOC_RESTORE_TIMEOUT_S s (MCOC_RESTORE_TIMEOUT_S): it goes on in the background; watch $PG_LOGFILE"
    sleep 0.5
  done
  for f in restore_command recovery_target_action recovery_target_time; do psql_pg "ALTER SYSTEM RESET $f" >/dev/null; done
  psql_pg "SELECT pg_reload_conf()" >/dev/null
  say "restored in $(( $(date +%s) - t0 )) s: databases $(psql_pg "SELECT string_agg(datname, ', ' ORDER BY datname) FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres'"), timeline $(psql_pg "SELECT timeline_id FROM pg_control_checkpoint()")"
  if [[ -n "$until" ]]; then
    say "note: the databases are as at $until, Kafka's topics are not: see docs/operations.md#backups before starting the services"
  fi
  say "next: make up (starts Kafka, applies any newer migrations, starts the services)"
}

# --- main --------------------------------------------------------------------------------------

main() {
  local cmd="${1:-}"
  [[ "$MCOC_PG_PORT" =~ ^[0-9]+$ ]] || die "MCOC_PG_PORT='$MCOC_PG_PORT' is not a port number"
  [[ "$MCOC_RESTORE_TIMEOUT_S" =~ ^[0-9]+$ ]] || die "MCOC_RESTORE_TIMEOUT_S='$MCOC_RESTORE_TIMEOUT_S' is not a number of seconds"
  case "$cmd" in
    backup) shift; (( $# <= 1 )) || { usage >&2; exit 1; }; cmd_backup "$@" ;;
    list) cmd_list ;;
    restore) shift; cmd_restore "$@" ;;
    prune) shift; cmd_prune "$@" ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 1 ;;
  esac
}

main "$@"
