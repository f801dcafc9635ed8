#!/usr/bin/env bash
# Tensor compression under the papers' set-ups (issue 20 section 6) on a lent GPU machine (one H200, 16 cores), in
# one command: both claims (trl_head_param_ratio_at_iso_accuracy, tensorized_net_param_ratio_at_iso_accuracy).
#
# Before (on the CPU machine, once; .device_data/ is git-ignored, about 37 MB):
#   python benchmarks/tensor_compression.py --prepare .device_data/tensor_compression
#       -> .device_data/tensor_compression/cifar10_jpeg/cifar10_jpeg.zip (2,000 training JPEGs per class, seeded,
#          + all 10,000 test JPEGs: 30 MB) and .device_data/tensor_compression/wheels (tensorly + tensorly-torch,
#          7.2 MB; the GPU image lacks them)
# Then with the `run` device tool:
#   run(command="bash benchmarks/tensor_compression_device.sh", carry=[".device_data/tensor_compression"],
#       timeout_s=290)
# It writes $OUT/tensor_compression.json (claims + every record; details.complete says whether every run finished),
# $OUT/tensor_compression.partial.json (the records, written after each job: kept if the summary step never ran)
# and $OUT/tensor_compression.log. Back here:
#   cp <files_at>/tensor_compression.json benchmarks/results/ && python benchmarks/claims_table.py
# (or, with only the partial file: cp <files_at>/tensor_compression.partial.json benchmarks/results/ and run
#  python benchmarks/tensor_compression.py --summarize-only $ARGS below, which writes the results file from it).
#
# Size: 3 seeds x 7 jobs (dense + its fine-tunes at both net ranks, Tucker-from-scratch at 2 ranks, TRL 10% / 3%,
# TCL+TRL, GAP+FC) = 21 jobs on WORKERS processes sharing the GPU, 20 epochs of 20,000 images (fine-tunes: 5), the
# data on the GPU per process. CPU here: 17-32 CPU-s per 20k-image epoch per job (1 thread); ~9M images in all.
# ESTIMATE, not measured: at 8-15k images/s per process with 12-16 processes sharing the H200 the training takes
# 70-140 s (the longest job, dense + 2 fine-tunes, 600k images, 40-75 s alone), + ~40 s of start-up. BUDGET
# (seconds from the pool's start, default 190) stops every fit (Lightning max_time) and starts no new job; such runs
# are kept, marked complete=false and left out of the claims. `timeout` ends the command BUDGET + 60 s after its
# start at the latest. env BUDGET / WORKERS / PYTHON override, ARGS replaces the benchmark's options, EXTRA is
# appended, e.g. a CPU smoke test:
#   OUT=/tmp/x WORKERS=2 DATA=/tmp/tc_prep EXTRA="--device cpu --train-size 256 --test-size 128 --epochs 1 \
#   --seeds 0" bash benchmarks/tensor_compression_device.sh
# The whole training set instead of the 20k subsample (the issue's full-CIFAR-10 whole-net part at the paper's 30
# epochs, say): PACK=.device_data/alpf_e2e (see benchmarks/alpf_e2e_device.sh), carry it and
# .device_data/tensor_compression/wheels only, e.g. ARGS="--scale paper --parts net --device cuda --net-ranks 0.25 0.1".
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/tensor_compression_out}
DATA=${DATA:-.device_data/tensor_compression}
BUDGET=${BUDGET:-190}
WORKERS=${WORKERS:-16}
PY=${PYTHON:-python3}
ARGS=${ARGS:---scale device --device cuda --trl-ranks 0.4 0.1 --net-ranks 0.25 0.1}
mkdir -p "$OUT"
LOG="$OUT/tensor_compression.log"
: >"$LOG"
rm -f "$OUT/tensor_compression.partial.json"  # never resume from an earlier run's records

if [ -n "${PACK:-}" ]; then
    # PACK=<the folder of 'python benchmarks/alpf_e2e.py --prepare'>: the whole CIFAR-10 (18 MB, lossless), so the
    # full-data scales (--scale full / paper) fit the carry; the wheels still come from $DATA/wheels
    "$PY" benchmarks/alpf_e2e.py --unpack "$PACK" /tmp/tc_data 2>&1 | tee -a "$LOG"
    [ "${PIPESTATUS[0]}" -eq 0 ] || exit 2
    export TRINITY_DATA=/tmp/tc_data
elif [ ! -f "$DATA/cifar10_jpeg/cifar10_jpeg.zip" ]; then
    echo "missing $DATA/cifar10_jpeg/cifar10_jpeg.zip: run 'python benchmarks/tensor_compression.py --prepare $DATA' and carry $DATA" | tee -a "$LOG" >&2
    exit 2
else
    export TRINITY_DATA="$DATA"                  # cifar_subsets -> load_cifar10 reads $DATA/cifar10_jpeg
fi
export TRINITY_CACHE=${TRINITY_CACHE:-/tmp/tensor_compression_cache}  # decoded once by the parent, read by workers
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c "import tensorly, tltorch" 2>/dev/null; then
    echo "installing the carried wheels: $(ls "$DATA"/wheels/*.whl | xargs -n1 basename | tr '\n' ' ')" | tee -a "$LOG"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/tc_site \
        "$DATA"/wheels/*.whl 2>&1 | tee -a "$LOG"
    [ "${PIPESTATUS[0]}" -eq 0 ] || exit 3
    export PYTHONPATH="$PYTHONPATH:/tmp/tc_site"
fi
{ command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; } \
    2>&1 | tee -a "$LOG"
"$PY" -c "import torch, tensorly, tltorch, lightning; print('torch', torch.__version__, 'tensorly', tensorly.__version__, 'tltorch', tltorch.__version__, 'lightning', lightning.__version__, 'cuda', torch.cuda.is_available())" \
    2>&1 | tee -a "$LOG"
echo "start $(date -u +%T) budget ${BUDGET}s workers $WORKERS nproc $(nproc) load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$LOG"

# shellcheck disable=SC2086  # ARGS / EXTRA are option lists
timeout -k 10 $((BUDGET + 60)) "$PY" benchmarks/tensor_compression.py $ARGS ${EXTRA:-} \
    --workers "$WORKERS" --budget "$BUDGET" --results-dir "$OUT" --out tensor_compression 2>&1 | tee -a "$LOG"
status=${PIPESTATUS[0]}
echo "end $(date -u +%T) status $status load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$LOG"
"$PY" - "$OUT" <<'EOF' 2>&1 | tee -a "$LOG"
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
final, partial = out / "tensor_compression.json", out / "tensor_compression.partial.json"
if final.is_file():
    d = json.loads(final.read_text())["details"]
    print(f"{len(d['runs'])}/{d['records_expected']} records, complete={d['complete']}, {d['run_seconds']:.0f} s")
    runs = d["runs"]
else:
    print("no tensor_compression.json; the partial file has the finished jobs' records")
    runs = json.loads(partial.read_text()) if partial.is_file() else []
for r in runs:
    print(r["seed"], r["variant"], f"{r['test_acc']:.2f}", r["net_params"], r.get("head_params", ""),
          f"{r['steps_done']}/{r['steps']}", f"{r['seconds']:.0f}s")
EOF
exit "$status"
