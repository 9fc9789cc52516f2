#!/usr/bin/env bash
# Rust SASRec vs its PyTorch twin (bench/peer_sasrec.py) on the same split and hyper-parameters,
# with 1 and 2 threads: per-epoch training time, their ratio, and test NDCG@10 / HR@10 (full
# ranking and 100 sampled negatives).
#
# Usage: bench/peer_sasrec.sh [EPOCHS] [DATASET] [MAXLEN] [DROPOUT]
#   defaults: 100 epochs on ml-latest-small, maxlen 200, dropout 0.2 (the reference settings
#   for dense MovieLens data). Creates bench/.venv with torch 2.5.1 if missing (~5 GB).
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-100}
DATASET=${2:-ml-latest-small}
MAXLEN=${3:-200}
DROPOUT=${4:-0.2}
VENV=bench/.venv
OUT=target/peer_sasrec
mkdir -p "$OUT"

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install "torch==2.5.1" "numpy<2"
fi

cargo xtask data prepare "$DATASET" --out "$OUT/data" >&2
cargo build -q -p xtask >&2

for T in 1 2; do
  echo "== $T thread(s): rust" >&2
  RAYON_NUM_THREADS=$T cargo xtask train sasrec --dataset "$DATASET" --epochs "$EPOCHS" \
    --set maxlen="$MAXLEN" --set dropout_rate="$DROPOUT" --eval-every "$EPOCHS" --patience 0 --retrain --json \
    > "$OUT/rust_t$T.json"
  echo "== $T thread(s): torch" >&2
  OMP_NUM_THREADS=$T "$VENV/bin/python" bench/peer_sasrec.py "$OUT/data/dataset.json" \
    "$EPOCHS" "$T" "$MAXLEN" "$DROPOUT" > "$OUT/torch_t$T.json"
done

"$VENV/bin/python" - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
print(f"{'threads':>7} {'rust s/ep':>10} {'torch s/ep':>10} {'speed-up':>8}   "
      f"{'rust N@10':>9} {'torch N@10':>10} {'rust H@10':>9} {'torch H@10':>10}   "
      f"{'rust sN@10':>10} {'torch sN@10':>11} {'rust sH@10':>10} {'torch sH@10':>11}")
for t in (1, 2):
    r = json.load(open(f"{out}/rust_t{t}.json"))
    p = json.load(open(f"{out}/torch_t{t}.json"))
    print(f"{t:>7} {r['seconds_per_epoch']:>10.3f} {p['seconds_per_epoch']:>10.3f} "
          f"{p['seconds_per_epoch'] / r['seconds_per_epoch']:>7.2f}x   "
          f"{r['ndcg@10']:>9.4f} {p['ndcg@10']:>10.4f} {r['hr@10']:>9.4f} {p['hr@10']:>10.4f}   "
          f"{r['sampled_ndcg@10']:>10.4f} {p['sampled_ndcg@10']:>11.4f} "
          f"{r['sampled_hr@10']:>10.4f} {p['sampled_hr@10']:>11.4f}")
PY
