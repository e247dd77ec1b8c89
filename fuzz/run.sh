#!/usr/bin/env bash
# fuzz/run.sh [SECONDS] [TARGET...]: builds the fuzz targets (cargo fuzz build, nightly) and
# runs each for SECONDS (default 60) from its committed seed corpus, FUZZ_JOBS at a time
# (default: the number of cores). Prints one summary row per target and exits non-zero if
# any target crashed, timed out or ran out of memory.
#
# New inputs go to fuzz/work/<target>/ (not committed), crash inputs to
# fuzz/artifacts/<target>/, each target's libFuzzer output to fuzz/work/<target>.log.
# Environment: FUZZ_JOBS, FUZZ_SANITIZER (default address; none is about twice as fast),
# FUZZ_TIMEOUT (seconds one input may take, default 10), FUZZ_ARGS (more libFuzzer flags),
# FUZZ_BUILD_ARGS (more `cargo fuzz build` flags, e.g. `--dev` for a build in a third of the
# time that runs slower: what a short smoke run wants).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
if [[ $# -gt 0 ]]; then shift; fi
if ! [[ $seconds =~ ^[0-9]+$ ]]; then
  echo "usage: fuzz/run.sh [SECONDS] [TARGET...]" >&2
  exit 2
fi

all=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^ctp-issuer-fuzz$')
if [[ $# -gt 0 ]]; then
  targets=("$@")
  for t in "${targets[@]}"; do
    grep -qx "$t" <<<"$all" || { echo "fuzz/run.sh: no target $t (targets: $(echo $all))" >&2; exit 2; }
  done
else
  mapfile -t targets <<<"$all"
fi

jobs=${FUZZ_JOBS:-$(nproc)}
sanitizer=${FUZZ_SANITIZER:-address}
timeout=${FUZZ_TIMEOUT:-10}
triple=$(rustc +nightly -vV | sed -n 's/^host: //p')
profile=release
[[ " ${FUZZ_BUILD_ARGS:-} " == *" --dev "* || " ${FUZZ_BUILD_ARGS:-} " == *" -D "* ]] && profile=debug
# SQLite's amalgamation (bundled by rusqlite, instrumented too) defines two static arrays
# of one name, which AddressSanitizer's one-definition-rule check takes for a violation.
export ASAN_OPTIONS="detect_odr_violation=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"

echo "fuzz: building ${#targets[@]} target(s) (sanitizer $sanitizer)"
build_started=$SECONDS
if [[ $# -gt 0 ]]; then
  for t in "${targets[@]}"; do cargo +nightly fuzz build --sanitizer "$sanitizer" ${FUZZ_BUILD_ARGS:-} "$t"; done
else
  cargo +nightly fuzz build --sanitizer "$sanitizer" ${FUZZ_BUILD_ARGS:-}
fi
echo "fuzz: built in $((SECONDS - build_started)) s; running each target ${seconds} s, ${jobs} at a time"

dictionary() {
  case $1 in
    visa_*) echo fuzz/dicts/visa.dict ;;
    api_bodies) echo fuzz/dicts/api.dict ;;
    webhook_verify | saas_answers) echo fuzz/dicts/saas.dict ;;
    config_file) echo fuzz/dicts/config.dict ;;
    api_auth) echo fuzz/dicts/auth.dict ;;
  esac
}

run_one() {
  local t=$1 dict
  mkdir -p "fuzz/work/$t" "fuzz/artifacts/$t"
  dict=$(dictionary "$t")
  local status=0
  # shellcheck disable=SC2086
  "fuzz/target/$triple/$profile/$t" -max_total_time="$seconds" -print_final_stats=1 -timeout="$timeout" \
    -artifact_prefix="fuzz/artifacts/$t/" ${dict:+-dict=$dict} ${FUZZ_ARGS:-} \
    "fuzz/work/$t" "fuzz/corpus/$t" >"fuzz/work/$t.log" 2>&1 || status=$?
  echo "$status" >"fuzz/work/$t.status"
}

for t in "${targets[@]}"; do
  rm -f "fuzz/work/$t.status"
  run_one "$t" &
  while [[ $(jobs -rp | wc -l) -ge $jobs ]]; do wait -n || true; done
done
wait

failed=0
echo
echo "| target | seconds | executions | exec/s | cov | ft | corpus | result |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for t in "${targets[@]}"; do
  log="fuzz/work/$t.log"
  status=$(cat "fuzz/work/$t.status" 2>/dev/null || echo "?")
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | grep -E 'cov: [0-9]+' | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<<"$last")
  if [[ $status == 0 ]]; then
    result=ok
  else
    failed=1
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    if grep -q 'ERROR: libFuzzer: timeout' "$log"; then
      result="TIMEOUT"
    elif grep -q 'out-of-memory' "$log"; then
      result="OUT OF MEMORY"
    else
      result="CRASH"
    fi
    result="$result (exit $status${artifact:+, $artifact}; see $log)"
  fi
  echo "| $t | $seconds | ${execs:-?} | ${rate:-?} | ${cov:-?} | ${ft:-?} | ${corp:-?} | $result |"
done
exit "$failed"
