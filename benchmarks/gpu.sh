#!/usr/bin/env bash
# The GPU checks, in one run of at most 8 minutes on a fresh GPU machine that has PyTorch,
# Triton, onnxruntime and timm but no network, with this repository copied over:
#
#   1. tests/test_cuda.py (AMP, both engines, inference/ONNX parity, CUDA graphs, ranking,
#      clustering, torchrun on the GPU);
#   2. benchmarks/inference.py --devices cuda: eager and compiled (compile_model: inductor
#      and CUDA graphs) ResNet-50, OSNet x1.0 and MSINet at batch 1, 8, 32 and 256, in
#      float32 (cuda.json), then in bfloat16 (cuda_bfloat16.json); each run writes its
#      JSON after every batch size;
#   3. with the time left, what may close the gap to the paper's 0.71x ResNet-50, at
#      batch 32: MSINet compiled in bfloat16 and float16, channels-last and NCHW, side by
#      side (cuda_variants.json); then MSINet and ResNet-50 compiled in bfloat16 with
#      inductor's max-autotune (cuda_autotune.json).
#
# torchreid is the one package such a machine lacks: on a machine with the package index,
#   bash benchmarks/gpu.sh --prepare      # builds its wheel into .whl/ (git-ignored)
# and send .whl along with the repository. Then, on the GPU machine:
#   bash benchmarks/gpu.sh [RESULTS_DIR]  # default benchmarks/results
# Each step runs under its share of the 8 minutes (GPU_SECONDS); a step that fails or
# runs out of time is reported and the next one still runs, one with under 30 s left is
# skipped; the exit status is the first failure's.
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == --prepare ]]; then
    python3 -m pip wheel --no-deps --wheel-dir .whl torchreid==0.2.5
    exit
fi
results=${1:-benchmarks/results}
mkdir -p "$results"
budget=${GPU_SECONDS:-480}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD

if ! python3 -c 'import torchreid' 2>/dev/null; then
    shopt -s nullglob
    wheels=(.whl/*.whl)
    if (( ${#wheels[@]} == 0 )); then
        echo 'torchreid is missing and .whl/ holds no wheel: run bash benchmarks/gpu.sh --prepare where pip reaches the index, and send .whl along' >&2
        exit 2
    fi
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/msinet_site \
        "${wheels[@]}" || exit 2
    export PYTHONPATH=/tmp/msinet_site:$PWD
fi
python3 -c 'import torch; print("torch", torch.__version__, "on", torch.cuda.get_device_name())' || exit 2

status=0
step() {  # step SECONDS_AT_MOST NAME COMMAND...: run it within its share of what is left
    local cap=$1 name=$2
    shift 2
    local left=$(( budget - SECONDS - 10 ))
    (( left < cap )) && cap=$left
    if (( cap < 30 )); then
        echo "=== $name: skipped, ${left}s of the budget left" >&2
        return
    fi
    echo "=== $name (at most ${cap}s)" >&2
    timeout --signal=INT --kill-after=10 "$cap" "$@"
    local code=$?
    echo "=== $name: exit $code after ${SECONDS}s in all" >&2
    (( code != 0 && status == 0 )) && status=$code
}

step 150 'tests/test_cuda.py' \
    python3 -m pytest tests/test_cuda.py -p no:cacheprovider -q -ra
for dtype in float32 bfloat16; do
    suffix=$([[ $dtype == float32 ]] || echo "_$dtype")
    step 240 "inference benchmark, compiled in $dtype" \
        python3 benchmarks/inference.py --devices cuda --no-onnx --repeats 5 \
        --cuda-batch-sizes 1 8 32 256 --compile-dtypes "$dtype" \
        --out "$results/cuda$suffix.json"
done
step 150 'inference benchmark, MSINet in bf16/fp16 and NCHW/channels-last' \
    python3 benchmarks/inference.py --devices cuda --no-onnx --repeats 5 \
    --cuda-batch-sizes 32 --compile-models msinet --compile-dtypes bfloat16 float16 \
    --compile-layouts nhwc nchw --out "$results/cuda_variants.json"
step 240 'inference benchmark, max-autotune in bfloat16' \
    python3 benchmarks/inference.py --devices cuda --no-onnx --repeats 5 \
    --cuda-batch-sizes 32 --compile-models resnet50 msinet --compile-dtypes bfloat16 \
    --max-autotune --out "$results/cuda_autotune.json"
exit $status
