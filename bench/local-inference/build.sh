#!/usr/bin/env bash
# Builds pp_tg (llama-bench's pp/tg method, see pp_tg.cpp) against the llama.cpp sources that
# llama-cpp-sys-2 vendors, with the flags given, and prints the build time.
#   bench/local-inference/build.sh OUT_DIR [cmake -D options...]
# The flags agp-llm's `local` feature builds with today (portable):
#   build.sh /tmp/pp-portable -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF
# This CPU's vector units:
#   build.sh /tmp/pp-native   -DGGML_NATIVE=ON  -DGGML_OPENMP=OFF
set -euo pipefail
out=${1:?usage: build.sh OUT_DIR [cmake -D options...]}
shift
here=$(cd "$(dirname "$0")" && pwd)
src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/llama-cpp-sys-2-0.1.161/llama.cpp | head -1)
start=$(date +%s)
cmake -S "$here" -B "$out" -DCMAKE_BUILD_TYPE=Release -DLLAMA_SRC="$src" "$@" >"$out.cmake.log" 2>&1 ||
    { tail -20 "$out.cmake.log"; exit 1; }
cmake --build "$out" --target pp_tg -j "${JOBS:-$(nproc)}" >"$out.build.log" 2>&1 ||
    { tail -30 "$out.build.log"; exit 1; }
echo "built $out/pp_tg in $(($(date +%s) - start)) s"
