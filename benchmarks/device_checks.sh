#!/usr/bin/env bash
# The GPU checks of one lent-device call (one H200 or H100), in one command, each step's output kept under $OUT:
#   1. signSGD hook over NCCL, world size 1 (timing vs the fp32 all-reduce hook, then 30 Lightning steps with
#      strategy="ddp_signsgd")                                        -> $OUT/signsgd_nccl.json
#   2. Dawid-Skene on 100M synthetic annotations: the CPU with every core vs the GPU vs the sharded path over a
#      world-size-1 NCCL group (benchmarks/crowd_distributed.py --single-gpu) -> $OUT/crowd_distributed_gpu.json
#   3. NRM runs (benchmarks/nrm_semisupervised.py; NRM_ARGS picks datasets / methods / seeds) -> $OUT/nrm_runs.jsonl
#   4. torch.profiler tables of the signSGD hook over NCCL, world size 1 -> $OUT/signsgd_nccl_profile.txt
# Before (here, once; .device_data/ is git-ignored): cp -r ../shared/data/mnist .device_data/
# Then: run(command="bash benchmarks/device_checks.sh", carry=[".device_data"], timeout_s=...)
# Back here: python benchmarks/nrm_semisupervised.py --aggregate benchmarks/results/nrm_semisupervised.json <runs>
# STEPS (default "1 2 3") chooses the steps; ANNOTATIONS (default 100000000) the crowd table's size.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
OUT=${OUT:-/tmp/device_checks_out}
PY=${PYTHON:-python3}
STEPS=${STEPS:-"1 2 3"}
mkdir -p "$OUT"
{ command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc; uptime; } \
    2>&1 | tee "$OUT/device.log"
"$PY" -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__, 'cuda', torch.cuda.is_available())" \
    2>&1 | tee -a "$OUT/device.log"
status=0
for step in $STEPS; do
    echo "=== step $step $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/device.log"
    case $step in
    1) timeout 150 "$PY" benchmarks/signsgd_comm.py --nccl-smoke --out "$OUT" 2>&1 | tail -40 | tee -a "$OUT/device.log" ;;
    2) timeout 240 "$PY" benchmarks/crowd_distributed.py --single-gpu --annotations "${ANNOTATIONS:-100000000}" \
        --results-dir "$OUT" 2>&1 | grep -v '^ ' | tail -30 | tee -a "$OUT/device.log" ;;
    3) TRINITY_DATA=.device_data timeout "${NRM_TIMEOUT:-330}" "$PY" benchmarks/nrm_semisupervised.py \
        --runs "$OUT/nrm_runs.jsonl" ${NRM_ARGS:---datasets mnist --methods maxmin_nrm nrm maxmin_nrm_no_rpn --seeds 3 4 --workers 6} \
        2>&1 | grep -v "Warning\|warn" | tail -40 | tee -a "$OUT/device.log" ;;
    4) timeout 120 "$PY" benchmarks/signsgd_comm.py --nccl-profile --out "$OUT" 2>&1 | tail -80 | tee -a "$OUT/device.log" ;;
    esac
    rc=${PIPESTATUS[0]}
    echo "=== step $step rc $rc $(date +%T)" | tee -a "$OUT/device.log"
    [ "$rc" = 0 ] || status=$rc
done
exit $status
