#!/usr/bin/env bash
# Reproduce bench/results/qwen2.5-coder/: Qwen2.5-Coder-1.5B-Instruct (INT4) with Qwen2.5-Coder-0.5B-Instruct
# (INT8) as draft, edgespec against OpenVINO GenAI.
#
#   bench/reproduce_qwen.sh [PAIR_DIR]    # default: /work/pairs/qwen2.5-coder, exported there if missing
#
# Needs: pip install -e '.[bench,export]'. The export takes 10-20 minutes and about 10 GB of RAM; the bench
# about 30-40 minutes on a 2-core CPU (1.5B decodes at ~5 tokens/s there), hence few prompts and tokens.
set -euo pipefail
cd "$(dirname "$0")/.."

PAIR="${1:-/work/pairs/qwen2.5-coder}"
if [ ! -f "$PAIR/edgespec.json" ]; then
    nice -n 10 edgespec export --preset qwen2.5-coder --out "$PAIR"
fi
nice -n 10 edgespec bench "$PAIR" --prompts humaneval,mtbench --limit 2 --repeats 2 --max-new-tokens 64 \
    --draft-lengths 1,2,3,4 --sweep-limit 1 --out bench/results/qwen2.5-coder
