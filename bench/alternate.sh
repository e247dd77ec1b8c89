#!/usr/bin/env bash
# Before/after of two builds by alternating runs (BENCHMARKS.md, third round): on a VM
# whose speed drifts by ±10 % within minutes, one table per build can disagree with the
# next; runs taken in turns, A B A B …, on the same bodies and each on a fresh SQLite
# file, cannot drift apart. Besides `ctp-bench notify`'s figures, each line gives the server's
# context switches per notification (all threads, from /proc/<pid>/task/*/status), which
# hardly move with the VM's speed.
#
#   bench/alternate.sh /path/to/before/ctp-issuer            # this tree's build is "after"
#   BENCH_PAIRS=5 BENCH_RUNS="rsa:64 shared-hs256:1" bench/alternate.sh OLD [NEW]
#
# Knobs (environment): BENCH_RUNS ("rsa:64 shared-hs256:1 shared-hs256:64": mode and
# concurrency of each run), BENCH_PAIRS (3), BENCH_DURATION (4s), BENCH_CARDS (1000),
# BENCH_RELAY (1: the outbox relay on, as in production; 0 turns it off), BENCH_KEEP=1.
# SQLite only (PostgreSQL's CPU is its own processes', which this does not count). Only loopback is targeted; every run is bounded and every server is stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

BEFORE=${1:?usage: bench/alternate.sh BEFORE_BIN [AFTER_BIN]}
RUNS=${BENCH_RUNS:-"rsa:64 shared-hs256:1 shared-hs256:64"}
PAIRS=${BENCH_PAIRS:-3}
DURATION=${BENCH_DURATION:-4s}
CARDS=${BENCH_CARDS:-1000}
WARMUP=100
PG_URL=unused

source bench/common.sh
AFTER=${2:-$BIN}

# Enough distinct bodies for the longest run of each mode (each run has a fresh database,
# so the runs can share them).
log "== preparing $WORK: fresh keys, $CARDS cards, notifications"
"$BENCH_BIN" prepare --dir "$WORK" --cards "$CARDS" >/dev/null
for mode in $(printf '%s\n' $RUNS | cut -d: -f1 | sort -u); do
    count=100000; [[ $mode == rsa ]] && count=20000
    "$BENCH_BIN" bodies --dir "$WORK" --mode "$mode" --count $((count + WARMUP)) >/dev/null 2>&1
done

# context_switches PID: voluntary + involuntary, all threads.
context_switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ { s += $2 } END { print s + 0 }'; }

run=0
for pair in $(seq "$PAIRS"); do
    for build in before after; do
        server=$BEFORE; [[ $build == after ]] && server=$AFTER
        for spec in $RUNS; do
            mode=${spec%%:*} c=${spec##*:}
            count=100000; [[ $mode == rsa ]] && count=20000
            run=$((run + 1))
            fresh_database sqlite "$run"
            SERVER_BIN=$server
            export_env=(CTP_DATABASE_URL="$url" CTP_KEYS_DIR="$WORK/keys" CTP_PUBLIC_ADDR="$PUBLIC"
                CTP_INTERNAL_ADDR="$INTERNAL" CTP_ADMIN_ADDR="$ADMIN" CTP_VISA_REPLAY_WINDOW=24h
                CTP_OUTBOX_ENABLED=$([[ "${BENCH_RELAY:-1}" == 1 ]] && echo true || echo false))
            env "${export_env[@]}" "$server" kits import "$WORK/kits.csv" >/dev/null
            start_server "$run" "${export_env[@]}"
            before_cs=$(context_switches "$SERVER_PID")
            load=$("$BENCH_BIN" notify --dir "$WORK" --mode "$mode" --target "http://$PUBLIC" \
                --concurrency "$c" --duration "$DURATION" --count "$count" --warmup "$WARMUP" \
                --server-pid "$SERVER_PID" --format kv) || true
            switches=$(( $(context_switches "$SERVER_PID") - before_cs ))
            stop_server
            sent=$(awk "$AWK_KV"' { print kv($0, "sent") }' <<<"$load")
            per_n=$(awk -v s="$switches" -v n="$sent" 'BEGIN { printf "%.2f", (n > 0 ? s / n : 0) }')
            echo "pair=$pair build=$build $load switches_per_n=$per_n"
        done
    done
done
