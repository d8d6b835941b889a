#!/usr/bin/env bash
# Installs fieldkit into .venv/, then runs the offline demo on the embedded default model:
# converts SmolLM2-135M-Instruct, imports the demo packets, opens the TUI (or, without a
# terminal, asks a few questions and prints the routed answers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/fieldkit demo "$@"
