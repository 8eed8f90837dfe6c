#!/usr/bin/env bash
# Builds llama.cpp's `llama-server` from the sources vendored in the PyPI sdist of
# llama-cpp-python (no network beyond PyPI), caches it, and prints the binary's path on stdout.
# First run ≈ 7 min on 2 cores; later runs are free.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

VERSION=0.3.36
out="$PEERS_CACHE/llama-server-$VERSION"
bin="$out/bin/llama-server"
if [ -x "$bin" ]; then printf '%s\n' "$bin"; exit 0; fi

venv=$(peers_venv)
"$venv/bin/pip" install --quiet cmake ninja
export PATH="$venv/bin:$PATH"
work="$out.build"
rm -rf "$work"; mkdir -p "$work"
log "downloading llama-cpp-python==$VERSION sdist"
# `--no-binary llama-cpp-python` (not `:all:`) so the sdist's build requirements, which pip installs
# just to read its metadata, come as wheels instead of building cmake from source.
"$venv/bin/pip" download --quiet --no-deps --no-binary llama-cpp-python -d "$work" "llama-cpp-python==$VERSION"
tar xzf "$work/llama_cpp_python-$VERSION.tar.gz" -C "$work"
src="$work/llama_cpp_python-$VERSION/vendor/llama.cpp"
# cmake's hundreds of lines go to a log, shown only when the build fails.
build_log="$out.build.log"
log "building llama-server (≈7 min on 2 cores; log: $build_log)"
if ! {
  cmake -S "$src" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF \
    -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_CCACHE=OFF &&
    cmake --build "$work/build" --target llama-server -j"$(nproc)"
} >"$build_log" 2>&1; then
  tail -n 40 "$build_log" >&2
  log "building llama-server failed; the whole log is $build_log"
  exit 1
fi
mkdir -p "$out/bin"
cp "$work/build/bin/llama-server" "$bin.part" && mv "$bin.part" "$bin"
rm -rf "$work"
log "llama-server ready: $bin"
printf '%s\n' "$bin"
