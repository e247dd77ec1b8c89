#!/usr/bin/env bash
# A long run at a fixed rate, as the service is deployed: the outbox relay on, publishing
# every event (to the log publisher with standard output thrown away, or to RabbitMQ with
# a consumer emptying the queue). For each database × publisher × key mode it starts a
# fresh `ctp-issuer serve`, sends distinct notifications at a fixed rate (open loop) for
# minutes, samples the server's CPU, RSS and the outbox backlog every second, then waits
# for the outbox to empty, and prints one table. With BENCH_BASELINE=1 each database ×
# mode also runs once with the relay off, the baseline the relay's cost is measured
# against.
#
#   bench/soak.sh                                  # everything: about 70 minutes
#   BENCH_DBS=sqlite BENCH_PUBLISHERS=log BENCH_MODES=shared-hs256 BENCH_DURATION=60s bench/soak.sh
#
# Knobs (environment): BENCH_PG_URL (postgres://postgres@127.0.0.1:5432/test),
# BENCH_AMQP_URL (amqp://guest:guest@127.0.0.1:5672/%2f), BENCH_DBS ("sqlite postgres"),
# BENCH_PUBLISHERS ("log rabbitmq"), BENCH_MODES ("shared-hs256 rsa"),
# BENCH_RATE_SHARED (2000/s), BENCH_RATE_RSA (1000/s), BENCH_DURATION (300s),
# BENCH_CONNECTIONS (64: the open loop's connections), BENCH_BASELINE (1: also the relay
# off), BENCH_CARDS (1000), BENCH_KEEP=1 keeps the work directory,
# BENCH_SERVER_BIN=path runs another build as the server under test.
#
# Only loopback is ever targeted, every run is bounded in time and count, and every
# process this script starts is stopped by its pid.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_URL=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/test}
AMQP_URL=${BENCH_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
DBS=${BENCH_DBS:-"sqlite postgres"}
PUBLISHERS=${BENCH_PUBLISHERS:-"log rabbitmq"}
MODES=${BENCH_MODES:-"shared-hs256 rsa"}
RATE_SHARED=${BENCH_RATE_SHARED:-2000}
RATE_RSA=${BENCH_RATE_RSA:-1000}
DURATION=${BENCH_DURATION:-300s}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
BASELINE=${BENCH_BASELINE:-1}
CARDS=${BENCH_CARDS:-1000}
WARMUP=200

source bench/common.sh

seconds=${DURATION%s}
rate_of() { if [[ $1 == rsa ]]; then echo "$RATE_RSA"; else echo "$RATE_SHARED"; fi; }

log "== preparing $WORK: fresh keys, $CARDS cards, notifications"
"$BENCH_BIN" prepare --dir "$WORK" --cards "$CARDS" >/dev/null
for mode in $MODES; do
    count=$(( $(rate_of "$mode") * seconds + WARMUP ))
    started=$(date +%s%N)
    "$BENCH_BIN" bodies --dir "$WORK" --mode "$mode" --count "$count" >/dev/null 2>&1
    log "   $mode: $count notifications built in $(( ($(date +%s%N) - started) / 1000000 )) ms"
done

CONSUMER_PID=""
stop_consumer() {
    if [[ -n "$CONSUMER_PID" ]]; then kill -TERM "$CONSUMER_PID" 2>/dev/null || true; wait "$CONSUMER_PID" 2>/dev/null || true; fi
    CONSUMER_PID=""
}
trap 'stop_consumer; cleanup' EXIT

RESULTS=$WORK/results.txt
: >"$RESULTS"
run=0
for db in $DBS; do
    for mode in $MODES; do
        rate=$(rate_of "$mode")
        count=$(( rate * seconds ))
        variants=$PUBLISHERS
        [[ $BASELINE == 1 ]] && variants="off $variants"
        for publisher in $variants; do
            run=$((run + 1))
            fresh_database "$db" "$run"
            queue="ctp.bench.soak.$$.$run"
            relay=(CTP_OUTBOX_ENABLED=true CTP_OUTBOX_PUBLISHER="$publisher")
            case $publisher in
                off) relay=(CTP_OUTBOX_ENABLED=false) ;;
                rabbitmq) relay+=(CTP_AMQP_URL="$AMQP_URL" CTP_OUTBOX_QUEUE="$queue") ;;
            esac
            export_env=(CTP_DATABASE_URL="$url" CTP_KEYS_DIR="$WORK/keys" CTP_PUBLIC_ADDR="$PUBLIC"
                CTP_INTERNAL_ADDR="$INTERNAL" CTP_ADMIN_ADDR="$ADMIN" CTP_VISA_REPLAY_WINDOW=2h "${relay[@]}")
            env "${export_env[@]}" "$SERVER_BIN" kits import "$WORK/kits.csv" >/dev/null

            if [[ $publisher == rabbitmq ]]; then
                "$BENCH_BIN" drain-queue --amqp-url "$AMQP_URL" --queue "$queue" >"$WORK/consumer-$run.out" 2>&1 &
                CONSUMER_PID=$!
            fi
            start_server "$run" "${export_env[@]}"
            log "== run $run: $mode at $rate/s for $DURATION on $db, relay $publisher ($ready)"
            watch=(--admin "$ADMIN")
            [[ $publisher == off ]] && watch=()
            load=$("$BENCH_BIN" notify --dir "$WORK" --mode "$mode" --target "http://$PUBLIC" \
                --rate "$rate" --concurrency "$CONNECTIONS" --duration "$DURATION" --count "$count" --warmup "$WARMUP" \
                --server-pid "$SERVER_PID" "${db_process[@]}" "${watch[@]}" --format kv) || true
            log "   $load"
            stop_server
            stop_consumer
            delivered="-"
            [[ $publisher == rabbitmq ]] && delivered=$(sed -n 's/^received=//p' "$WORK/consumer-$run.out")
            echo "db=$db publisher=$publisher delivered=$delivered $ready $load" >>"$RESULTS"
        done
    done
done

echo
echo "ctp-issuer soak — $(date -u +%Y-%m-%dT%H:%MZ), $(machine), $DURATION per run at a fixed rate, $CONNECTIONS connections"
echo
awk "$AWK_KV"'
BEGIN {
    printf "| %-12s | %-8s | %-8s | %5s | %6s | %6s | %7s | %8s | %7s | %8s | %9s | %8s | %8s | %11s | %7s | %8s | %8s | %8s | %9s |\n",
        "mode", "db", "relay", "rate", "p50 ms", "p90 ms", "p99 ms", "max ms", "non-200", "CPU-µs/n", "first min", "last min", "db µs/n", "max backlog", "drain s", "peak MiB", "MiB @1m", "MiB end", "delivered"
    print "|--------------|----------|----------|-------|--------|--------|---------|----------|---------|----------|-----------|----------|----------|-------------|---------|----------|----------|----------|-----------|"
}
{
    printf "| %-12s | %-8s | %-8s | %5s | %6.2f | %6.2f | %7.2f | %8.1f | %7s | %8s | %9s | %8s | %8s | %11s | %7s | %8.1f | %8.1f | %8.1f | %9s |\n",
        kv($0, "mode"), kv($0, "db"), kv($0, "publisher"), kv($0, "rate"), kv($0, "p50_ms"), kv($0, "p90_ms"), kv($0, "p99_ms"),
        kv($0, "max_ms"), kv($0, "non200") + kv($0, "errors"), kv($0, "server_cpu_us"), kv($0, "cpu_first_window_us"),
        kv($0, "cpu_last_window_us"), kv($0, "db_cpu_us"), kv($0, "max_backlog"), kv($0, "drain_s"),
        kv($0, "sampled_peak_rss_kib") / 1024, kv($0, "rss_1m_kib") / 1024, kv($0, "rss_end_kib") / 1024, kv($0, "delivered")
}' "$RESULTS"
echo
echo "CPU-µs/n: server CPU per notification over the whole run; first/last min: the same over the first and the last"
echo "minute (flat means close); db µs/n: PostgreSQL's own processes. max backlog: most events waiting in the outbox at"
echo "any sample (1 s apart); drain s: from the end of the load until the outbox was empty. peak MiB: highest RSS sampled;"
echo "MiB @1m and end: RSS one minute in and at the end (flat means close). delivered: messages the RabbitMQ consumer"
echo "received. relay off: the baseline (events wait in the outbox; no backlog or drain is measured)."
