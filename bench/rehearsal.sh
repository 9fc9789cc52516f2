#!/usr/bin/env bash
# A dress rehearsal of a paid run, offline: `reproduce rehearsal` on DATASET against the
# simulated API, first fault-free (the reference report), then through a fault storm with one
# kill -9 and a resume. Prints what the simulator saw and whether the two reports are identical.
#
#   bench/rehearsal.sh recbole:/tmp/synth/synth-gr [paper|small|fixture] [JOBS] [LATENCY_MS]
#
# Make paper-sized data first: cargo xtask data synth --preset gr --out /tmp/synth
set -euo pipefail
cd "$(dirname "$0")/.."
DATASET=${1:?usage: bench/rehearsal.sh <dataset spec> [scale] [jobs] [latency-ms]}
SCALE=${2:-paper}
JOBS=${3:-16}
LATENCY=${4:-200}
PORT=${PORT:-8766}
# The wait the storm's 429s ask for; 1000 ms as providers say, less to rehearse faster (which
# requests fail does not depend on it: faults are drawn from the request and its attempt count).
STORM_RETRY_AFTER_MS=${STORM_RETRY_AFTER_MS:-1000}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
cargo build --release -q -p xtask
X=${CARGO_TARGET_DIR:-target}/release/xtask
LLM="http:http://127.0.0.1:$PORT/v1#sim"

sim() { "$X" sim-api --port "$PORT" "$@" >"$OUT/sim.log" 2>&1 & SIM=$!; sleep 1; }
stats() { curl -s "127.0.0.1:$PORT/sim/stats"; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
args() { # the reproduce command line of run $1
  echo reproduce rehearsal --scale "$SCALE" --dataset "$DATASET" --llm "$LLM" --jobs "$JOBS" \
    --quiet --out "$OUT/$1-out" --runs "$OUT/$1-runs" --recordings "$OUT/$1.jsonl"
}
run() { "$X" $(args "$1"); }

echo "== fault-free reference (latency 20 ms; answers do not depend on latency)"
sim --latency-ms 20
T0=$(date +%s)
run clean 2>&1 | grep -v "^  done" | tail -4
echo "clean run: $(( $(date +%s) - T0 )) s"
stats >"$OUT/clean-stats.json"; kill $SIM; wait $SIM 2>/dev/null || true
CLEAN=$(field distinct_answered <"$OUT/clean-stats.json")

echo "== storm (429 30% asking to wait $STORM_RETRY_AFTER_MS ms, 5xx 10%, malformed 5%, dropped 5%), latency $LATENCY ms, one kill -9"
sim --faults storm --latency-ms "$LATENCY" --storm-retry-after-ms "$STORM_RETRY_AFTER_MS"
T0=$(date +%s)
# The xtask process itself, not a shell around it, gets the kill.
"$X" $(args storm) >"$OUT/storm-1.log" 2>&1 & RUN=$!
while [ "$(stats | field answered)" -lt $((CLEAN / 3)) ]; do sleep 1; done
kill -9 $RUN; wait $RUN 2>/dev/null || true
AT_KILL=$(stats | field answered)
echo "killed after $(( $(date +%s) - T0 )) s with $AT_KILL requests answered"
run storm 2>&1 | grep -v "^  done" | tail -4
echo "storm run: $(( $(date +%s) - T0 )) s in all"
stats >"$OUT/storm-stats.json"; kill $SIM; wait $SIM 2>/dev/null || true
python3 - "$OUT" <<'EOF'
import json, sys
out = sys.argv[1]
c = json.load(open(f"{out}/clean-stats.json"))
s = json.load(open(f"{out}/storm-stats.json"))
print(f"clean: {c['answered']} answered, {c['distinct_answered']} distinct, {c['answered_twice']} twice")
print(f"storm: {s['attempts']} attempts, faults {s['faults']}, {s['answered']} answered, "
      f"{s['distinct_answered']} distinct, {s['answered_twice']} answered twice")
EOF
if diff -r "$OUT/clean-out" "$OUT/storm-out" >/dev/null; then
  echo "reports: identical"
else
  echo "reports: DIFFER"; diff -r "$OUT/clean-out" "$OUT/storm-out" | head -20; exit 1
fi
