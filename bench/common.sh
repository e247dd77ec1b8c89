# Shared by bench/run.sh and bench/enroll.sh (sourced, not run): the release build, the
# work directory and its cleanup, loopback ports, a fresh database per run, and starting
# and stopping the server under test by its pid.
#
# Expects PG_URL to be set; sets BIN, SERVER_BIN, WORK, PUBLIC, INTERNAL, ADMIN.

log() { printf '%s\n' "$*" >&2; }

log "== building (cargo build --release)"
cargo build --release --quiet
BIN=$PWD/target/release/ctp-issuer
BENCH_BIN=$PWD/target/release/ctp-bench
SERVER_BIN=${BENCH_SERVER_BIN:-$BIN}

WORK=$(mktemp -d "/tmp/${BENCH_WORK_PREFIX:-ctp-bench}.XXXXXX")
SERVER_PID=""
SCHEMA=""
cleanup() {
    stop_server
    if [[ "${BENCH_KEEP:-0}" == 1 ]]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# Three free loopback ports (the server under test binds them itself; its embedded SaaS
# simulator takes an ephemeral one).
BASE=$((20000 + RANDOM % 20000))
PUBLIC=127.0.0.1:$BASE INTERNAL=127.0.0.1:$((BASE + 1)) ADMIN=127.0.0.1:$((BASE + 2))

# fresh_database DB RUN: a new SQLite file, or a new PostgreSQL schema reached through
# `?options[search_path]=`. Sets `url`, and `db_process` (the load tool's --db-process).
fresh_database() {
    local db=$1 run=$2 sep
    db_process=()
    case $db in
        sqlite) url="sqlite://$WORK/run-$run.db" ;;
        postgres)
            SCHEMA="bench_$$_$run"
            psql -q "$PG_URL" -c "CREATE SCHEMA $SCHEMA" >/dev/null
            sep='?'; [[ $PG_URL == *\?* ]] && sep='&'
            url="$PG_URL${sep}options[search_path]=$SCHEMA"
            db_process=(--db-process postgres)
            ;;
        *) log "unknown database $db"; exit 2 ;;
    esac
}

# start_server RUN ENV...: `serve` with these environment assignments, its log in the work
# directory and its standard output (where the log publisher writes events) thrown away. Sets SERVER_PID, and `ready` (start to ready and idle RSS, as key=value).
# The server's SaaS is its in-process simulator, asked for explicitly: on PostgreSQL it is
# not chosen for it.
start_server() {
    local run=$1 t0
    shift
    t0=$(date +%s%N)
    env CTP_SAAS_SIMULATOR=true "$@" "$SERVER_BIN" serve >/dev/null 2>"$WORK/server-$run.log" &
    SERVER_PID=$!
    ready=$("$BENCH_BIN" ready --admin "$ADMIN" --since-ns "$t0" --pid "$SERVER_PID" --format kv)
}

# stop_server: SIGTERM and wait for the server under test, then drop its schema, if any.
stop_server() {
    if [[ -n "$SERVER_PID" ]]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    SERVER_PID=""
    if [[ -n "$SCHEMA" ]]; then psql -q "$PG_URL" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true; fi
    SCHEMA=""
}

# The machine, for a table's title line.
machine() { echo "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'))"; }

# An awk function for the tables: kv(line, key) is the value of `key=value` in a results
# line, or "-".
AWK_KV='function kv(line, key,   n, i, parts, pair) {
    n = split(line, parts, " ")
    for (i = 1; i <= n; i++) { split(parts[i], pair, "="); if (pair[1] == key) return pair[2] }
    return "-"
}
'
