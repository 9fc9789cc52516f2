#!/usr/bin/env bash
# PyTorch peer of the Rust LightGCN: the official model, loss, sampler and optimiser on the split
# our code writes, with the same hyper-parameters (d 64, K 3, lr 1e-3, decay 1e-4, batch 2048).
# Prints the per-epoch time ratio, both models' test Recall@20 / NDCG@20 and both sides' peak
# RSS, at 1 thread (torch.set_num_threads(1) vs RAYON_NUM_THREADS=1) and at 2 threads.
#
#   bench/peer_lightgcn.sh [EPOCHS] [DATASET]      (defaults: 100, ml-latest-small)
#   PEER_THREADS="1" bench/peer_lightgcn.sh 1 recbole:DIR/synth-amz    (one thread count only)
#
# DATASET is any name `xtask train --dataset` takes, e.g. recbole:DIR. Paper-sized atomic files:
# `xtask data synth --preset amz --out DIR` (then recbole:DIR/synth-amz); the peer builds its
# graph sparsely and evaluates in user blocks, so it runs at that size (bench/peer_results_at_size.md).
# First run creates bench/.venv (gitignored) with torch 2.5.1 from PyPI (about 5 GB).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
epochs="${1:-100}"
dataset="${2:-ml-latest-small}"
threads_list="${PEER_THREADS:-1 2}"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch, scipy" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "torch==2.5.1" "numpy<2" "scipy<1.12" "pandas<2.2"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$root" && cargo build --quiet --release -p xtask)
xtask="${CARGO_TARGET_DIR:-$root/target}/release/xtask"
# Peak RSS of the Rust run (KiB), where GNU time is installed.
timed=()
if [ -x /usr/bin/time ]; then timed=(/usr/bin/time -f %M -o "$work/rust-rss"); fi
for threads in $threads_list; do
  echo "== $threads thread(s), $epochs epochs, $dataset" >&2
  rm -f "$work/rust-rss"
  RAYON_NUM_THREADS=$threads "${timed[@]}" "$xtask" train lightgcn --dataset "$dataset" \
    --epochs "$epochs" --eval-every "$epochs" --patience 0 --retrain --json \
    --write-split "$work/split" >"$work/rust-$threads.json"
  "$venv/bin/python" "$here/peer_lightgcn.py" "$work/split" "$epochs" "$threads" \
    >"$work/torch-$threads.jsonl"
  "$venv/bin/python" "$here/peer_lightgcn_compare.py" "$threads" "$work/rust-$threads.json" \
    "$work/torch-$threads.jsonl" "$work/rust-rss"
done
