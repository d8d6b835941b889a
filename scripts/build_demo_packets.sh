#!/usr/bin/env bash
# Rebuilds the shipped demo packets (assets/packets/*.fkpkt) from assets/demo/<domain>/.
#
# Usage: scripts/build_demo_packets.sh [DOMAIN ...]      (default: every domain in assets/demo)
# Env:   FIELDKIT_BUILD_HOME   build home (default: bench/out/demo-build, kept for reruns)
#        FIELDKIT_BUILD_MODEL  base model folder (default: the embedded default, installed
#                              into the build home if missing)
#        DEMO_MINUTES          training budget per packet (default 30: the notes recipe's
#                              prompts hold two records besides the question, so each
#                              step is slower: about 10 s against 5-6 s here)
#        DEMO_ITERS            most steps per packet (default 300)
#        DEMO_LAYERS           LoRA on the last N layers (default 16)
#        DEMO_LR               learning rate (default 1e-3)
#        DEMO_BITS             weights in the shipped packet: 16 (float16), 8 or 4 (default 16;
#                              8 and 4 via `library compact`, see docs/PACKET.md); with
#                              NOTES_ONLY too, to compact the shipped fp16 packets in place
#        DEMO_ENERGY           if set, trim each module to the rank holding this energy share
#        DEMO_FROM             if set, train further from the shipped packet's weights
#                              (`train --from`) instead of fresh ones
#        DEMO_OUT              where the packet files go (default assets/packets)
# Each packet: rank 8, scale 2.0, all 7 projections, the domain's training records expanded
# into several phrasings (plus paraphrases.jsonl), early stop on a 10% validation split.
# Each packet carries its domain's training records as source notes (`train --notes`), each
# passage with its record's paraphrases as other phrasings of its question (format 4).
# It is trained with the notes recipe, `train --grounded` (a share of the questions also
# asked with two records in the prompt, as answers with notes are asked); DEMO_GROUNDED=0
# trains on bare questions only, as the packets before it were.
# paraphrases.jsonl gives each record three phrasings in the records' words, then up to
# five in the users' voice (terse, typed on a phone, describing what is seen). All of them
# augment training and key the record's passage in the notes. exemplars.txt holds every
# training question, then the first three phrasings of each record, as `train
# --paraphrases` picks them from those three (fieldkit.training.dataset.pick_exemplars):
# as router exemplars the users'-voice phrasings drew everyday questions in
# (docs/BENCHMARKS.md, "Phrasings in the users' voice").
# The shipped poultry packet was trained so, on every phrasing; the other three shipped
# packets were trained before the users'-voice phrasings existed, on the three in the
# records' words, and trained again on all of them gained nothing in 30 minutes
# (docs/BENCHMARKS.md, "The four demo packets retrained on every phrasing").
# To change only a packet's exemplars, no training: `fieldkit --home FRESH library import
# assets/packets/NAME.fkpkt --exemplars assets/demo/<domain>/exemplars.txt` (signed again
# by that home, same weights and notes), then `library export` as below.
#
# NOTES_ONLY=1 scripts/build_demo_packets.sh [DOMAIN ...]: no training; each shipped packet
# is imported with `library import FILE --notes NOTES` (the domain's training records, each
# with its paraphrases) into a fresh home ($FIELDKIT_BUILD_HOME-notes), which signs it
# again with the same weights and exemplars, and is exported back over the shipped file.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
home=${FIELDKIT_BUILD_HOME:-bench/out/demo-build}
minutes=${DEMO_MINUTES:-30}
iters=${DEMO_ITERS:-300}
layers=${DEMO_LAYERS:-16}
lr=${DEMO_LR:-1e-3}
bits=${DEMO_BITS:-16}
energy=${DEMO_ENERGY:-}
out=${DEMO_OUT:-assets/packets}
fk=".venv/bin/fieldkit"
[ -x "$fk" ] || fk="fieldkit"
mkdir -p "$home" assets/packets "$out"
model=${FIELDKIT_BUILD_MODEL:-$home/models/smollm2-135m-instruct}
if [ ! -f "$model/config.json" ]; then
  .venv/bin/python -c "import sys; from pathlib import Path; from fieldkit.engine.convert import install_default; install_default(Path(sys.argv[1]))" "$(dirname "$model")"
fi
if [ $# -gt 0 ]; then domains=("$@"); else domains=(); for d in assets/demo/*/; do domains+=("$(basename "$d")"); done; fi
compact() {  # HOME NAME: the packet made smaller as DEMO_BITS / DEMO_ENERGY say, same name
  if [ "$bits" != 16 ] || [ -n "$energy" ]; then
    "$fk" --home "$1" --model "$model" library compact "$2" --bits "$bits" ${energy:+--energy "$energy"}
  fi
}
if [ -n "${NOTES_ONLY:-}" ]; then
  notes_home="$home-notes"
  rm -rf "$notes_home"
  mkdir -p "$notes_home"
  for domain in "${domains[@]}"; do
    dir="assets/demo/$domain"
    name=$(.venv/bin/python -c "import json,sys; print(json.load(open(sys.argv[1]))['name'])" "$dir/meta.json")
    notes="$notes_home/$domain-notes.jsonl"  # the records, each with its paraphrases
    .venv/bin/python -c "import json,sys; from fieldkit.training.dataset import attach_paraphrases, load_records, note_records, read_jsonl; d=sys.argv[1]; rs=attach_paraphrases(load_records(d+'/train.jsonl'), read_jsonl(d+'/paraphrases.jsonl')); print('\n'.join(map(json.dumps, note_records(rs))))" "$dir" > "$notes"
    "$fk" --home "$notes_home" --model "$model" library import "assets/packets/$name.fkpkt" --notes "$notes"
    compact "$notes_home" "$name"
    "$fk" --home "$notes_home" --model "$model" library export "$name" -o "assets/packets/$name.fkpkt" --force
  done
  exit 0
fi
for domain in "${domains[@]}"; do
  dir="assets/demo/$domain"
  meta() { .venv/bin/python -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$dir/meta.json" "$1"; }
  name=$(meta name)
  extra=()
  [ -f "$dir/paraphrases.jsonl" ] && extra+=(--paraphrases "$dir/paraphrases.jsonl")
  "$fk" --home "$home" --model "$model" library remove "$name" >/dev/null 2>&1 || true
  if [ -n "${DEMO_FROM:-}" ]; then
    cp "assets/packets/$name.fkpkt" "$home/from-$name.fkpkt"
    extra+=(--from "$home/from-$name.fkpkt")
  fi
  start=$(date +%s)
  "$fk" --home "$home" --model "$model" train "$dir/train.jsonl" --name "$name" \
    --domain "$(meta domain)" --description "$(meta description)" \
    --exemplars "$dir/exemplars.txt" "${extra[@]}" \
    --rank 8 --scale 2.0 --layers "$layers" --lr "$lr" --iters "$iters" --max-minutes "$minutes" \
    --notes $([ "${DEMO_GROUNDED:-1}" = 0 ] || echo --grounded)
  compact "$home" "$name"
  "$fk" --home "$home" --model "$model" library export "$name" -o "$out/$name.fkpkt" --force
  echo "built $out/$name.fkpkt in $(( $(date +%s) - start )) s"
done
