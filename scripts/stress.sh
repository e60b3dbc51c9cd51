#!/usr/bin/env bash
# `make stress`: the integration suite with the cores kept busy by a CPU hog, as on a loaded CI
# machine. stress-ng (Debian's) runs HOGS busy workers at normal priority beside the tests; the
# suite starts once the 1-minute load average has reached MIN_LOAD, and the load is sampled
# every 10 s while it runs (out/stress/load.txt; the figures are printed at the end).
#
#   scripts/stress.sh [HOGS] [MIN_LOAD] [-- PYTEST ARGS]     defaults: 4 and 4
set -uo pipefail
cd "$(dirname "$0")/.."
hogs=${1:-4}
min_load=${2:-4}
shift $(( $# >= 2 ? 2 : $# ))
[ "${1:-}" = -- ] && shift
command -v stress-ng >/dev/null || { echo "stress: stress-ng is missing: apt-get install stress-ng (make setup)" >&2; exit 1; }

out=out/stress
mkdir -p "$out"
: > "$out/load.txt"
setsid stress-ng --cpu "$hogs" --cpu-load 100 --timeout 0 --quiet &
hog=$!
sampler=
cleanup() {
  [ -n "$sampler" ] && kill "$sampler" 2>/dev/null
  kill -- -"$hog" 2>/dev/null
  wait "$hog" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

load1() { cut -d' ' -f1 /proc/loadavg; }
echo "stress: $hogs CPU hogs on $(nproc) cores; waiting for a load average of $min_load"
for _ in $(seq 180); do
  awk -v l="$(load1)" -v m="$min_load" 'BEGIN { exit !(l >= m) }' && break
  sleep 1
done
echo "stress: load average $(load1); the integration suite starts"
( while sleep 10; do echo "$(date +%s) $(load1)" >> "$out/load.txt"; done ) &
sampler=$!

start=$(date +%s)
.venv/bin/pytest -q -ra -m integration --junitxml="$out/junit.xml" "$@" 2>&1 | tee "$out/test.log"
rc=${PIPESTATUS[0]}
end=$(date +%s)
python3 scripts/ci-summary.py "$out/junit.xml" "$out/test.log" 10
awk -v s="$start" -v e="$end" '{ n++; t += $2; if (min == "" || $2 < min) min = $2; if ($2 > max) max = $2 }
  END { if (n) printf "stress: %d s of tests at load average %.1f (min %.1f, max %.1f over %d samples)\n",
        e - s, t / n, min, max, n }' "$out/load.txt"
exit "$rc"
