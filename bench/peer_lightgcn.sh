#!/usr/bin/env bash
# PyTorch peer of the Rust LightGCN: the official model, loss, sampler and optimiser on the split
# our code writes, with the same hyper-parameters (d 64, K 3, lr 1e-3, decay 1e-4, batch 2048).
# Prints the per-epoch time ratio and both models' test Recall@20 / NDCG@20, at 1 thread
# (torch.set_num_threads(1) vs RAYON_NUM_THREADS=1) and at 2 threads.
#
#   bench/peer_lightgcn.sh [EPOCHS] [DATASET]      (defaults: 100, ml-latest-small)
#
# First run creates bench/.venv (gitignored) with torch 2.5.1 from PyPI (about 5 GB).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
epochs="${1:-100}"
dataset="${2:-ml-latest-small}"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch, scipy" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "torch==2.5.1" "numpy<2" "scipy<1.12" "pandas<2.2"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$root" && cargo build --quiet --release -p xtask)
xtask="${CARGO_TARGET_DIR:-$root/target}/release/xtask"
for threads in 1 2; do
  echo "== $threads thread(s), $epochs epochs, $dataset" >&2
  RAYON_NUM_THREADS=$threads "$xtask" train lightgcn --dataset "$dataset" --epochs "$epochs" \
    --eval-every "$epochs" --patience 0 --retrain --json \
    --write-split "$work/split" >"$work/rust-$threads.json"
  "$venv/bin/python" "$here/peer_lightgcn.py" "$work/split" "$epochs" "$threads" \
    >"$work/torch-$threads.jsonl"
  "$venv/bin/python" "$here/peer_lightgcn_compare.py" "$threads" "$work/rust-$threads.json" \
    "$work/torch-$threads.jsonl"
done
