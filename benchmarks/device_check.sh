#!/bin/bash
# The GPU check of issues 18 and 20, prepared to run in one call of the device tool (a lent
# machine with one NVIDIA GPU, no network, Python 3.12 with torch+CUDA, 15 minutes a session).
#
#   benchmarks/device_check.sh --prepare      # here: fill .devcheck/ (git-ignored, ~45 MB) with what
#                                             # the GPU machine lacks: Fashion-MNIST, LPIPS's AlexNet
#                                             # weights, and wheels of lpips, dcor and pytorch-msssim
#   benchmarks/device_check.sh                # there (device run, carry [".devcheck"], timeout ~560 s):
#                                             # writes its logs and tables under $OUT
#
# There, in this order, each step under its own time limit so that one stuck step leaves time
# for the rest: the machine and torch's view of it; the tests that run only where CUDA is
# (tests/test_device.py and the CUDA cases of the metric tests); `splitleak demo --quick` and
# `splitleak demo` on the GPU (issue 20's goal 6: the full demo within 60 s); then the benchmark
# suite without the demos on the GPU (BENCHMARKS.md's `--device "$DEVICE"` table). Copy the tables
# into BENCHMARKS.md's GPU section by hand: what a lent machine says is data to read.
set -u
cd "$(dirname "$0")/.."
CHECK=.devcheck

if [ "${1:-}" = "--prepare" ]; then
    set -e
    mkdir -p "$CHECK/data" "$CHECK/weights" "$CHECK/wheels"
    cp /usr/share/datasets/fashion-mnist/*.gz "$CHECK/data/"   # apt-get install dataset-fashion-mnist
    weights=$(.venv/bin/python -c "from splitleak.weights import weights_dir; print(weights_dir())")
    cp "$weights"/*alexnet*.safetensors "$CHECK/weights/"       # splitleak weights
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d "$CHECK/wheels" \
        lpips==0.1.4 dcor==0.7 pytorch-msssim==1.0.0
    du -sh "$CHECK"
    exit 0
fi

OUT=${OUT:-runs/device-check}
PY=${PY:-python3}        # the GPU machine's Python, which holds torch with CUDA
DEVICE=${DEVICE:-cuda}   # DEVICE=cpu PY=.venv/bin/python: the same steps here, to check the script itself
ONLY=${ONLY:-}           # e.g. ONLY="suite": run only the steps named (a rerun of one that ran out of time)
WORK=$(mktemp -d)        # the demos' folders (a demo reuses what a folder already holds)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 SPLITLEAK_DATA_DIR=$PWD/$CHECK/data SPLITLEAK_WEIGHTS_DIR=$PWD/$CHECK/weights
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$CHECK"/wheels/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD

step() {  # step NAME SECONDS COMMAND...: its output appended to $OUT/log.txt, its wall time and status to $OUT/steps.txt
    local name=$1 limit=$2; shift 2
    if [ -n "$ONLY" ] && [[ " $ONLY " != *" $name "* ]]; then return; fi
    local start=$(date +%s%N)
    echo "===== $name: $*" >> "$OUT/log.txt"
    timeout "$limit" "$@" >> "$OUT/log.txt" 2>&1
    local rc=$?
    printf '%-11s rc=%-3s %7.1f s  (limit %s s)  %s\n' "$name" "$rc" "$(( ($(date +%s%N) - start) / 1000000 ))e-3" "$limit" "$*" | tee -a "$OUT/steps.txt"
}

step env 30 bash -c 'nvidia-smi; "$0" -c "import torch, sys; print(sys.version); print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0), torch.get_num_threads(), \"CPU threads\")"' "$PY"
step tests 100 "$PY" -m pytest -q -x -p no:cacheprovider tests/test_device.py tests/metrics/test_dependence.py tests/metrics/test_image.py
step demo-quick 80 "$PY" -m splitleak.cli demo --quick --device "$DEVICE" --quiet --out "$WORK/demo-quick"
step demo 200 "$PY" -m splitleak.cli demo --device "$DEVICE" --quiet --out "$WORK/demo"
step demo-table 20 "$PY" -m benchmarks.device_stages "$WORK/demo" "$OUT"
step suite 200 "$PY" -m benchmarks --device "$DEVICE" --skip-demo --repeats 2 --out "$OUT/suite"
cat "$OUT/steps.txt"
