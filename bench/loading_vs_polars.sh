#!/usr/bin/env bash
# Loading beside polars: `xtask data prepare amazon-movies-tv` (the hand-written reader and
# preprocess.rs) against the same pipeline in Python polars (bench/loading_polars.py), on the same
# generated Amazon Movies & TV files: the 2014 ratings-only CSV and the 2018 review JSON lines.
# Both read the file, keep the earliest of a repeated (user, item) (ties by position in the
# file), run the iterative 5-core to its fixed point and split leave-one-out. Wall clock, CPU time
# and peak RSS come from /usr/bin/time for each process; the splits are then compared row by row.
#
#   bench/loading_vs_polars.sh [DIR] [LINES]
#
# DIR (default /tmp/agp-loadbench) gets csv-2014/ratings_Movies_and_TV.csv and
# json-2018/Movies_and_TV.json, LINES lines each (default 10,000,000; ~0.4 GB and ~3.6 GB),
# generated once (seeded) and kept. REPEAT=N runs every row N times, interleaved, and keeps the
# fastest (default 1). XTASK names the binary [default: target/release/xtask, built if missing].
# Makes bench/.venv-polars (polars 1.44.2, numpy 2.4.6) if missing.
#
# Rows:
#   xtask                 cold cache: sha256 of the raw file (the checksum that names the cache
#                         entry), parse, preprocess, ids and item text, cache entry written
#   xtask, hash memoised  the same with the file's sha256 already memoised (polars hashes nothing)
#   polars                default thread pool (every core)
#   polars, 1 thread      POLARS_MAX_THREADS=1 (the xtask loader is single-threaded)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-/tmp/agp-loadbench}
LINES=${2:-10000000}
REPEAT=${REPEAT:-1}
VENV=bench/.venv-polars
PY=$VENV/bin/python
XTASK=${XTASK:-${CARGO_TARGET_DIR:-target}/release/xtask}

if ! "$PY" -c "import polars, numpy" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "polars==1.44.2" "numpy==2.4.6"
fi
[ -x "$XTASK" ] || cargo build --release -q -p xtask
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time; }

mkdir -p "$DIR"
"$PY" bench/loading_polars.py gen "$DIR" "$LINES"
RUNS=$(mktemp -d "$DIR/run.XXXXXX")
RESULTS=$RUNS/results.tsv
trap 'rm -rf "$RUNS"' EXIT
printf 'tool\tformat\tlines\twall_s\tcpu_s\trss_kb\tusers\titems\tinteractions\n' >"$RESULTS"

file_of() {
  case $1 in
    csv-2014) echo "$DIR/csv-2014/ratings_Movies_and_TV.csv" ;;
    json-2018) echo "$DIR/json-2018/Movies_and_TV.json" ;;
  esac
}

# timed LABEL FORMAT CMD...: runs CMD under /usr/bin/time; its stdout+stderr go to $RUNS/last.log.
timed() {
  local label=$1 fmt=$2
  shift 2
  /usr/bin/time -f '%e %U %S %M' -o "$RUNS/time" "$@" >"$RUNS/last.log" 2>&1 || {
    cat "$RUNS/last.log" >&2
    exit 1
  }
  read -r wall user sys rss <"$RUNS/time"
  local counts
  if [[ $label == xtask* ]]; then
    grep -q "prepared in" "$RUNS/last.log" || { echo "$label did not prepare:" >&2; cat "$RUNS/last.log" >&2; exit 1; }
    # amazon-movies-tv: U users, I items, N interactions (prepared in ...)
    counts=$(sed -n 's/^[^:]*: \([0-9]*\) users, \([0-9]*\) items, \([0-9]*\) interactions.*/\1\t\2\t\3/p' "$RUNS/last.log")
  else
    counts=$("$PY" -c 'import json, sys
d = json.loads(sys.stdin.read().strip().splitlines()[-1])
print("\t".join(str(d[k]) for k in ("users", "items", "interactions")))' <"$RUNS/last.log")
  fi
  local cpu
  cpu=$("$PY" -c "print(round($user + $sys, 2))")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$fmt" "$LINES" "$wall" "$cpu" "$rss" "$counts" >>"$RESULTS"
  echo "  $label, $fmt: ${wall} s wall, ${cpu} s CPU, $((rss / 1024)) MiB" >&2
}

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $XTASK" >&2
for rep in $(seq "$REPEAT"); do
  for fmt in csv-2014 json-2018; do
    f=$(file_of "$fmt")
    echo "== $fmt, run $rep/$REPEAT" >&2
    cat "$f" >/dev/null # every row reads it from the page cache
    cache=$RUNS/cache-$fmt
    rm -rf "$cache"
    timed xtask "$fmt" "$XTASK" data prepare amazon-movies-tv --raw "$(dirname "$f")" --cache "$cache"
    rm -f "$cache"/*.bin # keep file-hashes.json: the next run loads and preprocesses, hashes nothing
    timed "xtask, hash memoised" "$fmt" "$XTASK" data prepare amazon-movies-tv --raw "$(dirname "$f")" --cache "$cache"
    timed polars "$fmt" "$PY" bench/loading_polars.py prepare "$fmt" "$f" "$RUNS/polars-$fmt.parquet"
    timed "polars, 1 thread" "$fmt" env POLARS_MAX_THREADS=1 \
      "$PY" bench/loading_polars.py prepare "$fmt" "$f" "$RUNS/polars-$fmt.parquet"
  done
done

echo "== are the splits the same? (xtask --out from its cache vs the polars parquet)" >&2
for fmt in csv-2014 json-2018; do
  f=$(file_of "$fmt")
  "$XTASK" data prepare amazon-movies-tv --raw "$(dirname "$f")" --cache "$RUNS/cache-$fmt" \
    --out "$RUNS/out-$fmt" 2>/dev/null
  printf '%s: ' "$fmt"
  "$PY" bench/loading_polars.py compare "$RUNS/polars-$fmt.parquet" \
    "$RUNS/out-$fmt/recbole/amazon-movies-tv/amazon-movies-tv.inter" || SAME=no
  rm -rf "$RUNS/out-$fmt"
done

"$PY" bench/loading_polars.py table "$RESULTS"
[ "${SAME:-yes}" = yes ] || { echo "the splits differ (see above)" >&2; exit 1; }
