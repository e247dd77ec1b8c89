#!/usr/bin/env bash
# The enrollment-API benchmark, in one go: builds the release binary, prepares
# fresh keys (the internal API's token secret and the SaaS callback secret included), then
# for each database × concurrency starts a fresh `ctp-issuer serve` with its embedded
# Click to Pay SaaS simulator, loads its internal API over loopback with
# `ctp-bench enroll` (registerEntityAndKit, a fresh customer and card per request),
# waits for the asynchronous results, stops it, and finally prints one table.
#
#   bench/enroll.sh                  # everything
#   BENCH_DBS=sqlite BENCH_DURATION=3s bench/enroll.sh
#
# Knobs (environment): BENCH_PG_URL (postgres://postgres@127.0.0.1:5432/test),
# BENCH_DBS ("sqlite postgres"), BENCH_CONCURRENCY ("1 16 64"), BENCH_DURATION (5s per
# run), BENCH_COUNT (most registrations per run, 5000: that many customers and cards are
# created through the registry API before each run, unmeasured), BENCH_WARMUP (50),
# BENCH_CALLBACK_DELAY (the simulator's delay from accepting a request to completing it
# and calling back; the service's default, 500ms), BENCH_DRAIN_TIMEOUT (30s: longest wait
# for the results after the load), BENCH_RELAY=0 turns the outbox relay off in the
# server under test (on by default, as in production and in bench/run.sh), BENCH_KEEP=1 keeps the work directory (keys,
# databases, server logs), BENCH_SERVER_BIN=path runs another build as the server under
# test (the load tool is always this tree's).
#
# Only loopback is ever targeted, every run is bounded in time and count, and every
# process this script starts is stopped by its pid.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_URL=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/test}
DBS=${BENCH_DBS:-"sqlite postgres"}
CONCURRENCY=${BENCH_CONCURRENCY:-"1 16 64"}
DURATION=${BENCH_DURATION:-5s}
COUNT=${BENCH_COUNT:-3000}
WARMUP=${BENCH_WARMUP:-50}
CALLBACK_DELAY=${BENCH_CALLBACK_DELAY:-500ms}
DRAIN_TIMEOUT=${BENCH_DRAIN_TIMEOUT:-30s}

BENCH_WORK_PREFIX=ctp-bench-enroll source bench/common.sh

# --- Fresh keys. `ctp-bench enroll` brings its own customers and cards, so the kits CSV is
# not imported; one card keeps `prepare` happy.
log "== preparing $WORK: fresh keys"
"$BENCH_BIN" prepare --dir "$WORK" --cards 1 >/dev/null

# --- One run: fresh database, start, wait ready, load, drain, stop.
RESULTS=$WORK/results.txt
: >"$RESULTS"
run=0
for db in $DBS; do
    for c in $CONCURRENCY; do
        run=$((run + 1))
        fresh_database "$db" "$run"
        export_env=(CTP_DATABASE_URL="$url" CTP_KEYS_DIR="$WORK/keys" CTP_PUBLIC_ADDR="$PUBLIC"
            CTP_INTERNAL_ADDR="$INTERNAL" CTP_ADMIN_ADDR="$ADMIN" CTP_SAAS_CALLBACK_DELAY="$CALLBACK_DELAY"
            CTP_OUTBOX_ENABLED=$([[ "${BENCH_RELAY:-1}" == 1 ]] && echo true || echo false))

        start_server "$run" "${export_env[@]}"
        log "== run $run: enroll on $db, concurrency $c ($ready)"
        # The token is minted with the same keys directory's secret as the server's.
        load=$(env CTP_KEYS_DIR="$WORK/keys" "$BENCH_BIN" enroll --target "http://$INTERNAL" --admin "$ADMIN" \
            --concurrency "$c" --duration "$DURATION" --count "$COUNT" --warmup "$WARMUP" \
            --drain-timeout "$DRAIN_TIMEOUT" --server-pid "$SERVER_PID" "${db_process[@]}" --format kv) || true
        log "   $load"
        stop_server
        if [[ $load == mode=* ]]; then echo "db=$db $ready $load" >>"$RESULTS"; fi
    done
done

# --- The table.
echo
echo "ctp-issuer enrollment API benchmark (registerEntityAndKit) — $(date -u +%Y-%m-%dT%H:%MZ), $(machine)"
echo "embedded SaaS simulator, callback delay $CALLBACK_DELAY; $DURATION or $COUNT registrations per run, after $WARMUP warm-up ones;"
echo "each run first creates $((COUNT + WARMUP)) customers and cards in one tenant (BENCH_COUNT; the results depend on the tenant's size)"
echo
awk "$AWK_KV"'
BEGIN {
    printf "| %-8s | %4s | %7s | %6s | %6s | %6s | %7s | %7s | %8s | %11s | %8s | %9s | %8s | %9s | %8s | %10s | %7s | %7s |\n",
        "db", "conc", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "non-200", "CPU-µs/n", "+async µs/n", "db µs/n", "srv cores", "db cores", "gen cores", "peak MiB", "async done", "drain s", "setup s"
    print "|----------|------|---------|--------|--------|--------|---------|---------|----------|-------------|----------|-----------|----------|-----------|----------|------------|---------|---------|"
}
{
    rss = kv($0, "peak_rss_kib")
    peak = (rss == "-") ? "-" : sprintf("%.1f", rss / 1024)
    done = kv($0, "async_done") "/" kv($0, "ok")
    printf "| %-8s | %4s | %7.0f | %6.2f | %6.2f | %6.2f | %7.2f | %7s | %8s | %11s | %8s | %9s | %8s | %9s | %8s | %10s | %7s | %7s |\n",
        kv($0, "db"), kv($0, "concurrency"), kv($0, "rps"), kv($0, "p50_ms"), kv($0, "p90_ms"), kv($0, "p99_ms"),
        kv($0, "max_ms"), kv($0, "non200") + kv($0, "errors"), kv($0, "server_cpu_us"), kv($0, "total_cpu_us"), kv($0, "db_cpu_us"),
        kv($0, "server_cores"), kv($0, "db_cores"), kv($0, "gen_cores"), peak, done, kv($0, "async_drain_s"), kv($0, "setup_s")
}' "$RESULTS"
echo
echo "req/s and latency: the synchronous answer of registerEntityAndKit (recorded, SaaS called, trace id stored)."
echo "CPU-µs/n: server CPU per registration over the load window (/proc/<pid>/stat); +async µs/n: from the window's start"
echo "to the last result, i.e. with the callbacks applied and the embedded simulator's own work (same process). db µs/n:"
echo "PostgreSQL's processes' CPU per registration over the window (SQLite runs inside the server: counted in CPU-µs/n)."
echo "async done: registrations finished (SUCCESS or FAILED, from /metrics) of those answered 200; drain s: how long after"
echo "the load ended the last one finished (at least the callback delay). peak MiB: VmHWM after the drain; setup s: creating"
echo "the run's customers and cards through the registry API, before the clock. Non-200 codes: in the per-run lines above."
