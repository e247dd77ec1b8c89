#!/usr/bin/env bash
# The notification-path benchmark, in one go: builds the release binary,
# measures the crypto floor with `openssl speed`, prepares fresh keys, cards and
# notifications, then for each key mode × database × concurrency starts a fresh
# `ctp-issuer serve`, loads it over loopback with `ctp-bench notify`, stops it, and
# finally prints one table. See BENCHMARKS.md for what the columns mean.
#
#   bench/run.sh                 # everything (about 3 minutes on the 2-core machine)
#   BENCH_DBS=sqlite BENCH_MODES=shared-hs256 BENCH_CONCURRENCY=64 bench/run.sh
#
# Knobs (environment): BENCH_PG_URL (postgres://postgres@127.0.0.1:5432/test),
# BENCH_MODES ("rsa shared-hs256"), BENCH_DBS ("sqlite postgres"),
# BENCH_CONCURRENCY ("1 16 64"), BENCH_DURATION (5s per run), BENCH_CARDS (1000),
# BENCH_RSA_COUNT (20000) and BENCH_SHARED_COUNT (100000): most requests per run,
# BENCH_RELAY=0 turns the outbox relay off in the server under test (it is on by default,
# as in production, publishing every event with the log publisher; off is the variant
# that shows what the relay costs),
# BENCH_KEEP=1 keeps the work directory (keys, kits, bodies, server logs),
# BENCH_SERVER_BIN=path runs another build as the server under test (before/after
# comparisons; the load tool is always this tree's).
#
# Only loopback is ever targeted, every run is bounded in time and count, and every
# process this script starts is stopped by its pid.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_URL=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/test}
MODES=${BENCH_MODES:-"rsa shared-hs256"}
DBS=${BENCH_DBS:-"sqlite postgres"}
CONCURRENCY=${BENCH_CONCURRENCY:-"1 16 64"}
DURATION=${BENCH_DURATION:-5s}
CARDS=${BENCH_CARDS:-1000}
RSA_COUNT=${BENCH_RSA_COUNT:-20000}
SHARED_COUNT=${BENCH_SHARED_COUNT:-100000}
WARMUP=100
NPROC=$(nproc)

source bench/common.sh

# --- The floor: one RSA-2048 private-key operation (the JWE key unwrap) and one public-key
# operation (the PS256 verification) per notification, per core, as OpenSSL does them.
# Measured before and after the runs; the table uses the faster of the two, so that a
# noisy moment on a shared machine can only make our ratio look worse, never better.
floor_speed() {
    openssl speed -mr -seconds 3 rsa2048 2>/dev/null | awk -F: '/^\+F2:/ {
        s = $4; v = $5; if (s < 1) s = 1 / s; if (v < 1) v = 1 / v; print s, v }'
}
log "== floor: openssl speed -seconds 3 rsa2048 (now and again after the runs)"
read -r SIGN_BEFORE VERIFY_BEFORE < <(floor_speed)
log "   RSA-2048 private ops/s per core: $SIGN_BEFORE, public (verify) ops/s: $VERIFY_BEFORE"

# --- Fresh keys, cards, and the notifications (built once, shared by every run: each run
# has a fresh database, so no run sees a body twice).
log "== preparing $WORK: fresh keys, $CARDS cards, notifications"
"$BENCH_BIN" prepare --dir "$WORK" --cards "$CARDS" >/dev/null
for mode in $MODES; do
    count=$SHARED_COUNT; [[ $mode == rsa ]] && count=$RSA_COUNT
    started=$(date +%s%N)
    "$BENCH_BIN" bodies --dir "$WORK" --mode "$mode" --count $((count + WARMUP)) >/dev/null 2>&1
    log "   $mode: $((count + WARMUP)) notifications built in $(( ($(date +%s%N) - started) / 1000000 )) ms"
done

# --- One run: fresh database, import, start, wait ready, load, stop.
RESULTS=$WORK/results.txt
: >"$RESULTS"
run=0
for db in $DBS; do
    for mode in $MODES; do
        count=$SHARED_COUNT; [[ $mode == rsa ]] && count=$RSA_COUNT
        for c in $CONCURRENCY; do
            run=$((run + 1))
            fresh_database "$db" "$run"
            export_env=(CTP_DATABASE_URL="$url" CTP_KEYS_DIR="$WORK/keys" CTP_PUBLIC_ADDR="$PUBLIC"
                CTP_INTERNAL_ADDR="$INTERNAL" CTP_ADMIN_ADDR="$ADMIN" CTP_VISA_REPLAY_WINDOW=1h
                CTP_OUTBOX_ENABLED=$([[ "${BENCH_RELAY:-1}" == 1 ]] && echo true || echo false))
            env "${export_env[@]}" "$SERVER_BIN" kits import "$WORK/kits.csv" >/dev/null

            start_server "$run" "${export_env[@]}"
            log "== run $run: $mode on $db, concurrency $c ($ready)"
            load=$("$BENCH_BIN" notify --dir "$WORK" --mode "$mode" --target "http://$PUBLIC" \
                --concurrency "$c" --duration "$DURATION" --count "$count" --warmup "$WARMUP" \
                --server-pid "$SERVER_PID" "${db_process[@]}" --format kv) || true
            log "   $load"
            stop_server
            echo "db=$db $ready $load" >>"$RESULTS"
        done
    done
done

# --- The floor again, and the faster of the two.
read -r SIGN_AFTER VERIFY_AFTER < <(floor_speed)
log "== floor after the runs: $SIGN_AFTER private ops/s, $VERIFY_AFTER public ops/s"
read -r SIGN_PER_S VERIFY_PER_S < <(awk -v a="$SIGN_BEFORE" -v b="$SIGN_AFTER" -v c="$VERIFY_BEFORE" -v d="$VERIFY_AFTER" \
    'BEGIN { print (a > b ? a : b), (c > d ? c : d) }')
FLOOR_US=$(awk -v s="$SIGN_PER_S" -v v="$VERIFY_PER_S" 'BEGIN { printf "%.1f", 1e6 / s + 1e6 / v }')

# --- The table.
echo
echo "ctp-issuer notification benchmark — $(date -u +%Y-%m-%dT%H:%MZ), $(machine)"
echo "floor (openssl speed rsa2048, per core, faster of before/after the runs): $SIGN_PER_S private ops/s, $VERIFY_PER_S public ops/s = $FLOOR_US CPU-µs per RSA-mode notification"
echo
awk -v floor="$FLOOR_US" -v nproc="$NPROC" "$AWK_KV"'
BEGIN {
    printf "| %-12s | %-8s | %4s | %8s | %6s | %6s | %6s | %7s | %7s | %9s | %7s | %6s | %6s | %6s | %10s | %7s | %8s | %8s | %8s | %8s |\n",
        "mode", "db", "conc", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "non-200", "CPU-µs/n", "÷floor", "srv cores", "db cores", "gen cores", "floor req/s", "% floor", "peak MiB", "idle MiB", "anon MiB", "ready ms"
    print "|--------------|----------|------|----------|--------|--------|--------|---------|---------|-----------|---------|-----------|----------|-----------|------------|---------|----------|----------|----------|----------|"
}
{
    mode = kv($0, "mode"); cpu = kv($0, "server_cpu_us"); gen = kv($0, "gen_cores"); dbc = kv($0, "db_cores")
    ratio = "-"; allowed = "-"; pct = "-"
    if (mode == "rsa" && cpu != "-") {
        ratio = sprintf("%.2f", cpu / floor)
        avail = nproc - (gen == "-" ? 0 : gen) - (dbc == "-" ? 0 : dbc)
        allowed = sprintf("%.0f", avail * 1e6 / floor)
        pct = sprintf("%.0f%%", 100 * kv($0, "rps") / allowed)
    }
    rss = kv($0, "peak_rss_kib"); idle = kv($0, "idle_rss_kib"); anon = kv($0, "idle_anon_kib")
    printf "| %-12s | %-8s | %4s | %8.0f | %6.2f | %6.2f | %6.2f | %7.2f | %7s | %9s | %7s | %9s | %8s | %9s | %10s | %7s | %8.1f | %8.1f | %8.1f | %8s |\n",
        mode, kv($0, "db"), kv($0, "concurrency"), kv($0, "rps"), kv($0, "p50_ms"), kv($0, "p90_ms"), kv($0, "p99_ms"),
        kv($0, "max_ms"), kv($0, "non200") + kv($0, "errors"), cpu, ratio, kv($0, "server_cores"), dbc, gen, allowed, pct,
        rss / 1024, idle / 1024, anon / 1024, kv($0, "ready_ms")
}' "$RESULTS"
echo
echo "CPU-µs/n: server CPU per notification (/proc/<pid>/stat); ÷floor: that over the floor above (RSA mode only: shared-secret"
echo "mode has no public-key operation). floor req/s: what the floor allows on the cores left to the server ($NPROC minus the"
echo "load generator's and PostgreSQL's measured cores). peak MiB: VmHWM after the run; idle MiB: VmRSS once /readyz answered,"
echo "anon MiB: its anonymous part (RssAnon; the rest is the mapped binary and libraries)."
