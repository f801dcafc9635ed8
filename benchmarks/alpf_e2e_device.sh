#!/usr/bin/env bash
# ALPF under the paper's protocol with the issue's "fast small ResNet" (issue 20, section 1) on a lent GPU machine
# (one H200, 16 cores), in one command: Uniform, ALPF-ERC, ALPF-EIG, ALPF-EDC, AQ-ERC and AL-ME on the whole 50k
# CIFAR-10 pool, 3 seeds, every learner on to full annotation, one process per (seed, learner) sharing the GPU.
#
# Before (on the CPU machine, once; .device_data/ is git-ignored):
#   python benchmarks/alpf_e2e.py --prepare .device_data/alpf_e2e     # the CIFAR-10 JPEGs, 62 -> 18 MB (lossless)
# Then with the `run` device tool:
#   run(command="bash benchmarks/alpf_e2e_device.sh", carry=[".device_data/alpf_e2e"], timeout_s=600)
# It writes $OUT/alpf_work.tgz (the work folder: settings, plan, job and progress files, logs; refreshed every
# 20 s, so a run cut off by the call's limit still brings back every measured round), $OUT/alpf_e2e.json (the
# work folder merged alone) and $OUT/alpf_e2e_device.log. Back here: untar into outputs/alpf_e2e/<folder> and merge
# it first in --protocols (see docs/alpf.md).
#
# Protocol (ARGS): small_resnet width 32 (1.65M parameters), bf16 autocast, 500 steps of 256 per round (the same
# 128k images a round as the 50k CPU protocol's 2,000 of 64), Adam 2e-3 with the per-round cosine, re-initialized
# every round, one question per pick then re-score. BUDGET (seconds from the start, default 400): no learner starts
# a new round after it (its measured rounds are kept; a learner stopped before 30% counts nowhere); every learner
# process is killed at BUDGET + KILL_AFTER (default 60) seconds. PROBE=1: a 2-minute check of the whole path on a
# small pool (not a result). env SEEDS / STRATEGIES / TO_FULL / EXTRA override; a CPU smoke test of the script:
#   OUT=/tmp/x DEVICE=cpu PRECISION=32-true PROBE=1 SEEDS=0 STRATEGIES="uniform alpf_erc" \
#       DATA=.device_data/alpf_e2e bash benchmarks/alpf_e2e_device.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
START=$(date +%s)
OUT=${OUT:-/tmp/alpf_e2e_out}
DATA=${DATA:-.device_data/alpf_e2e}
BUDGET=${BUDGET:-400}
KILL_AFTER=${KILL_AFTER:-60}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
PRECISION=${PRECISION:-bf16-mixed}
SEEDS=${SEEDS:-"0 1 2"}
STRATEGIES=${STRATEGIES:-"uniform alpf_erc eig edc aq_erc al_me"}
TO_FULL=${TO_FULL:-$STRATEGIES}
if [ "${PROBE:-0}" = 1 ]; then
    SIZE="--scale 0.1 --steps 50"
    WORK=${TMPDIR:-/tmp}/alpf_probe
else
    SIZE="--scale 1 --steps 500"
    WORK=${TMPDIR:-/tmp}/alpf_gpu_resnet
fi
rm -rf "$WORK"  # a fresh work folder every call (an earlier call's settings would refuse these jobs); see WORK_FROM
ARGS=${ARGS:-"$SIZE --model resnet --width 32 --batch-size 256 --schedule cosine --lr 2e-3 --session rescore"}
mkdir -p "$OUT" "$WORK"
# WORK_FROM=<a carried earlier work folder of the same protocol>: its finished learners are kept (a job skips a
# learner its seed's job file already holds), the others run, e.g. the ALPF learners on to full annotation:
#   STRATEGIES="alpf_erc eig edc" WORK_FROM=outputs/alpf_e2e/p50000_resnet_gpu (carry that folder too)
if [ -n "${WORK_FROM:-}" ]; then
    cp -r "$WORK_FROM"/. "$WORK"/ && rm -f "$WORK"/*.lock "$WORK"/alpf_e2e.json
fi
LOG="$OUT/alpf_e2e_device.log"
: >"$LOG"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export TRINITY_DATA=/tmp/alpf_data TRINITY_CACHE=/tmp/alpf_cache
{ command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; } \
    2>&1 | tee -a "$LOG"
"$PY" -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__, 'cuda', torch.cuda.is_available())" \
    2>&1 | tee -a "$LOG"
# MPS=1: the learners' small kernels share the GPU's SMs through CUDA MPS (without it the processes time-slice the
# GPU); if its daemon does not start or a CUDA client cannot connect within 40 s, it is stopped and the run goes on
# without it
if [ "${MPS:-0}" = 1 ] && command -v nvidia-cuda-mps-control >/dev/null; then
    nvidia-cuda-mps-control -d 2>&1 | tee -a "$LOG"
    if timeout 40 "$PY" -c "import torch; torch.ones(1, device='cuda').sum().item(); print('MPS client ok')" 2>&1 | tee -a "$LOG" | grep -q "MPS client ok"; then
        echo "MPS on" | tee -a "$LOG"
    else
        echo quit | timeout 10 nvidia-cuda-mps-control; echo "MPS failed: off" | tee -a "$LOG"
    fi
fi
# the data: rebuild the archive, decode it once (every process then reads the decoded cache)
"$PY" benchmarks/alpf_e2e.py --unpack "$DATA" "$TRINITY_DATA" 2>&1 | tee -a "$LOG" || exit 2
"$PY" -c "from trinity_lightning.data import load_cifar10; print('decoded', len(load_cifar10('train').labels), len(load_cifar10('test').labels))" \
    2>&1 | tee -a "$LOG" || exit 2
[ -f benchmarks/alpf_e2e_gpu_plan.json ] && [ "${PROBE:-0}" != 1 ] && cp benchmarks/alpf_e2e_gpu_plan.json "$WORK/plan.json"
STOP=$((START + BUDGET))
echo "start $(date -u +%T) (+$(($(date +%s) - START)) s) stop-at +${BUDGET}s nproc $(nproc --all) load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$LOG"
echo "args: $ARGS --device $DEVICE --precision $PRECISION ${EXTRA:-}" | tee -a "$LOG"

snapshot() { tar czf "$OUT/alpf_work.tgz.tmp" -C "$WORK" . 2>/dev/null && mv "$OUT/alpf_work.tgz.tmp" "$OUT/alpf_work.tgz"; }
pids=()
for seed in $SEEDS; do
    for s in $STRATEGIES; do
        # shellcheck disable=SC2086  # ARGS / EXTRA / TO_FULL are option lists
        "$PY" benchmarks/alpf_e2e.py $ARGS ${EXTRA:-} --device "$DEVICE" --precision "$PRECISION" --threads 1 \
            --seeds "$seed" --strategies "$s" --to-full $TO_FULL --stop-at "$STOP" --work "$WORK" \
            --note "lent GPU: one process per (seed, learner), $(echo $SEEDS | wc -w) seeds x $(echo $STRATEGIES | wc -w) learners sharing one GPU" \
            >"$WORK/log_s${seed}_$s.txt" 2>&1 &
        pids+=($!)
    done
done
while :; do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
    now=$(($(date +%s) - START))
    echo "+${now}s alive $alive load $(cut -d' ' -f1 /proc/loadavg) rounds $(cat "$WORK"/progress_*.json 2>/dev/null | grep -o '"budget"' | wc -l) $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null)" | tee -a "$LOG"
    snapshot
    [ "$alive" = 0 ] && break
    if [ "$now" -ge $((BUDGET + KILL_AFTER)) ]; then
        echo "killing $alive learner processes at +${now}s" | tee -a "$LOG"
        kill "${pids[@]}" 2>/dev/null
        sleep 2
        break
    fi
    sleep 20
done
failed=0
for p in "${pids[@]}"; do
    wait "$p"
    rc=$?
    # 143 / 137: stopped by the budget above (its measured rounds are kept); anything else is a failed learner
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 143 ] && [ "$rc" -ne 137 ]; then failed=$((failed + 1)); fi
done
grep -h "^seed \|Error\|error" "$WORK"/log_s*.txt 2>/dev/null | tail -40 | tee -a "$LOG"
[ "$failed" = 0 ] || echo "$failed learner process(es) failed: see $WORK/log_s*.txt in alpf_work.tgz" | tee -a "$LOG"
"$PY" benchmarks/alpf_e2e.py $ARGS --device "$DEVICE" --precision "$PRECISION" --work "$WORK" --merge \
    --seeds $SEEDS --protocols "$WORK" --out-dir "$OUT" --plot "$WORK/alpf_e2e.png" 2>&1 | tail -12 | tee -a "$LOG"
snapshot
[ "${MPS:-0}" = 1 ] && echo quit | timeout 10 nvidia-cuda-mps-control 2>/dev/null
echo "end +$(($(date +%s) - START))s" | tee -a "$LOG"
[ "$failed" = 0 ]
