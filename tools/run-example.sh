#!/usr/bin/env bash
# The README's main-job command: installs what is missing, builds, writes the demo model, then trains a
# LoRA adapter on the bundled example data (configs/example), scores the data with and without it, generates
# text with it, and writes it for llama.cpp (its importance matrix, then a q4_0 GGUF with the adapter merged); then the same for the chat example (configs/example-chat: conversations, trainer sft, the tiny
# Qwen2 fixture with ChatML), a DPO run on preference pairs (configs/example-dpo: trainer dpo), and a reward model on
# the same pairs (configs/example-reward: trainer reward), merged into a *ForSequenceClassification folder.
#
# The demo model is the random-initialised tiny Llama that tools/make_fixtures.py writes (no pretrained
# model ships in a Debian or PyPI package we can use offline), so the loss falls from ~6.9 (uniform over
# its 1000-token vocabulary) to ~4 as the adapter learns the example sentences; it is not a useful model.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
tools/build.sh
.venv/bin/python3 tools/make_fixtures.py --out build/fixtures
build/autotrain train --config configs/example/training_params.json --no-resume
echo
echo "== metrics: example-run/metrics.jsonl, loss curve: example-run/loss_curve.svg"
echo "== loss on the training split (the example has no validation split), with the adapter, then the base alone:"
build/autotrain eval --config configs/example/training_params.json --split train
build/autotrain eval --config configs/example/training_params.json --split train --no-adapter
echo "== greedy continuation with the adapter:"
build/autotrain generate --model build/fixtures/models/llama --adapter example-run \
  --prompt "Question: Where does the red fox go in the morning? Answer:" --max-new-tokens 24
echo "== for llama.cpp: the importance matrix of the tuned model on its data, then one GGUF with the adapter merged:"
build/autotrain imatrix --config configs/example/training_params.json --out example-run/imatrix.gguf
build/autotrain export-gguf --model build/fixtures/models/llama --adapter example-run --merge --type q4_0 \
  --imatrix example-run/imatrix.gguf --out example-run/example-run.Q4_0.gguf
echo
echo "== the chat example (configs/example-chat): conversations through the model's chat template, trainer sft"
build/autotrain train --config configs/example-chat/training_params.json --no-resume
build/autotrain eval --config configs/example-chat/training_params.json --split train
build/autotrain eval --config configs/example-chat/training_params.json --split train --no-adapter
echo "== a chat turn with the adapter (the prompt as a user message, the assistant's turn opened):"
build/autotrain generate --model build/fixtures/models/qwen2 --adapter example-chat-run --quantization int4 --chat \
  --prompt "Where does the red fox go in the morning?" --max-new-tokens 16
echo
echo "== the preference example (configs/example-dpo): trainer dpo on prompt / chosen / rejected pairs"
build/autotrain train --config configs/example-dpo/training_params.json --no-resume
echo "== the adapter against its base (the DPO reference) on the validation pairs:"
build/autotrain eval --config configs/example-dpo/training_params.json
echo "== a reward model on the same pairs (configs/example-reward): trainer reward, a score head beside the LoRA"
build/autotrain train --config configs/example-reward/training_params.json --no-resume
echo "== its loss, accuracy and margin on the validation pairs, then merged into a *ForSequenceClassification model:"
build/autotrain eval --config configs/example-reward/training_params.json
build/autotrain merge-adapter --base build/fixtures/models/llama --adapter example-reward-run \
  --out example-reward-run-merged --force
