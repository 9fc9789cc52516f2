#!/usr/bin/env bash
# Rust SASRec vs its PyTorch twin (bench/peer_sasrec.py) on the same split and hyper-parameters,
# with 1 and 2 threads: per-epoch training time, their ratio, test NDCG@10 / HR@10 (full
# ranking and 100 sampled negatives) and both sides' peak RSS.
#
# Usage: bench/peer_sasrec.sh [EPOCHS] [DATASET] [MAXLEN] [DROPOUT]
#   defaults: 100 epochs on ml-latest-small; MAXLEN and DROPOUT default to the Rust defaults for
#   the dataset (maxlen 200, dropout 0.2 for dense data like MovieLens, whose mean history is
#   >= 100; else 50 and 0.5, e.g. for the paper's AMZ), which the PyTorch twin then also uses.
#   PEER_THREADS="1" bench/peer_sasrec.sh 1 recbole:DIR/synth-amz    (one thread count only)
# DATASET is any name `xtask train --dataset` takes, e.g. recbole:DIR (paper-sized atomic files:
# `xtask data synth --preset amz --out DIR`, then recbole:DIR/synth-amz). The twin evaluates in
# user blocks, so it runs at that size (bench/peer_results_at_size.md).
# Creates bench/.venv with torch 2.5.1 if missing (~5 GB).
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-100}
DATASET=${2:-ml-latest-small}
MAXLEN=${3:-}
DROPOUT=${4:-}
THREADS_LIST=${PEER_THREADS:-1 2}
VENV=bench/.venv
OUT=target/peer_sasrec
mkdir -p "$OUT"

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install "torch==2.5.1" "numpy<2"
fi

# The release binary, as bench/peer_lightgcn.sh (one build for both peers).
cargo build --quiet --release -p xtask >&2
XTASK="${CARGO_TARGET_DIR:-$PWD/target}/release/xtask"
"$XTASK" data prepare "$DATASET" --out "$OUT/data" >&2

SET=()
[ -n "$MAXLEN" ] && SET+=(--set maxlen="$MAXLEN")
[ -n "$DROPOUT" ] && SET+=(--set dropout_rate="$DROPOUT")
for T in $THREADS_LIST; do
  echo "== $T thread(s): rust" >&2
  RSS=()
  if [ -x /usr/bin/time ]; then RSS=(/usr/bin/time -f %M -o "$OUT/rust_t$T.rss"); fi
  RAYON_NUM_THREADS=$T "${RSS[@]}" "$XTASK" train sasrec --dataset "$DATASET" \
    --epochs "$EPOCHS" "${SET[@]}" --eval-every "$EPOCHS" --patience 0 --retrain --json \
    > "$OUT/rust_t$T.json"
  # The twin uses exactly the window length and dropout the Rust run used.
  read -r ML DR < <("$VENV/bin/python" -c 'import json, sys
h = json.load(open(sys.argv[1]))["hyperparameters"]
print(h["maxlen"], h["dropout_rate"])' "$OUT/rust_t$T.json")
  echo "== $T thread(s): torch (maxlen $ML, dropout $DR)" >&2
  OMP_NUM_THREADS=$T "$VENV/bin/python" bench/peer_sasrec.py "$OUT/data/dataset.json" \
    "$EPOCHS" "$T" "$ML" "$DR" > "$OUT/torch_t$T.json"
done

"$VENV/bin/python" - "$OUT" $THREADS_LIST <<'PY'
import json, os, sys
out, threads = sys.argv[1], [int(t) for t in sys.argv[2:]]
print(f"{'threads':>7} {'rust s/ep':>10} {'torch s/ep':>10} {'speed-up':>8}   "
      f"{'rust N@10':>9} {'torch N@10':>10} {'rust H@10':>9} {'torch H@10':>10}   "
      f"{'rust sN@10':>10} {'torch sN@10':>11} {'rust sH@10':>10} {'torch sH@10':>11}")
rss = []
for t in threads:
    r = json.load(open(f"{out}/rust_t{t}.json"))
    p = json.load(open(f"{out}/torch_t{t}.json"))
    print(f"{t:>7} {r['seconds_per_epoch']:>10.3f} {p['seconds_per_epoch']:>10.3f} "
          f"{p['seconds_per_epoch'] / r['seconds_per_epoch']:>7.2f}x   "
          f"{r['ndcg@10']:>9.4f} {p['ndcg@10']:>10.4f} {r['hr@10']:>9.4f} {p['hr@10']:>10.4f}   "
          f"{r['sampled_ndcg@10']:>10.4f} {p['sampled_ndcg@10']:>11.4f} "
          f"{r['sampled_hr@10']:>10.4f} {p['sampled_hr@10']:>11.4f}")
    f = f"{out}/rust_t{t}.rss"
    last = open(f).read().split() if os.path.exists(f) else []
    rust_rss = f"{int(last[-1]) / 1024:.0f} MiB" if last and last[-1].isdigit() else "n/a"
    rss.append(f"threads {t}: peak RSS rust {rust_rss}, torch {p['max_rss_mib']:.0f} MiB; "
               f"maxlen {p['maxlen']}, dropout {p['dropout']}; "
               f"torch evaluation {p['eval_seconds']:.1f} s (not in s/ep)")
print("\n".join(rss))
PY
