#!/usr/bin/env bash
# Re-measure the tensor benchmark's accuracy grid on a lent GPU machine (one H200, 16 cores), in one command.
#
# Before (on the CPU machine, once; .device_data/ is git-ignored):
#   python benchmarks/tensor_layers.py prepare --wheels .device_data/tensor/wheels
#       -> .device_data/tensor/bench_data.npz (16 MB: seeded class-stratified CIFAR-10 15,000/3,000 and
#          Fashion-MNIST 20,000/5,000) and the tensorly + tensorly-torch wheels (7.5 MB) the GPU image lacks
# Then with the `run` device tool:
#   run(command="bash benchmarks/tensor_layers_device.sh", carry=[".device_data/tensor"], timeout_s=560)
# It writes $OUT/grid.json (every record, meta.complete says whether all jobs finished), $OUT/grid.log and
# $OUT/records.jsonl (the raw per-model lines, kept even if the grid step fails). Back here:
#   python benchmarks/tensor_layers.py report --grid <files_at>/grid.json --latency benchmarks/results/tensor_layers.json
#
# Size: 2 datasets x 3 seeds x 5 jobs (net, trl-cp, trl-tucker, trl-tt, tcl) = 30 jobs on 15 worker processes;
# about 1,500 CIFAR/F-MNIST epochs (the stored 2026-11-25 grid: ~940 epochs, 12 workers, 139 s on an H100). The
# longest single job is 72 CIFAR-10 epochs. BUDGET (seconds, default 420) stops the pool and keeps what finished,
# so the command ends inside the 10-minute limit; env BUDGET / WORKERS / SEEDS / PYTHON override, and GRID_ARGS is appended to
# the grid command (later options win), e.g. a CPU smoke test:
#   OUT=/tmp/t WORKERS=2 SEEDS=1 GRID_ARGS="--device cpu --epochs 1 --ft-epochs 1 --train-limit 1000 --test-limit 500
#   --trl-ranks 0.1 1.0 --tcl-trl-ranks 0.5 --net-ranks 0.5" bash benchmarks/tensor_layers_device.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/tensor_device_out}
DATA=.device_data/tensor
BUDGET=${BUDGET:-420}
WORKERS=${WORKERS:-15}
SEEDS=${SEEDS:-3}
PY=${PYTHON:-python3}
RAW=/tmp/tensor_grid
rm -rf "$RAW"  # never report an earlier run's grid.json as this one's
mkdir -p "$OUT"

if [ ! -f "$DATA/bench_data.npz" ]; then
    echo "missing $DATA/bench_data.npz: run 'python benchmarks/tensor_layers.py prepare --wheels $DATA/wheels' and carry $DATA" >&2
    exit 2
fi
if ! "$PY" -c "import tensorly, tltorch" 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$DATA"/wheels/*.whl || exit 3
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
{ command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; } \
    | tee "$OUT/grid.log"
"$PY" -c "import torch, tensorly, tltorch; print('torch', torch.__version__, 'tensorly', tensorly.__version__, 'tltorch', tltorch.__version__)" \
    2>&1 | tee -a "$OUT/grid.log"

"$PY" benchmarks/tensor_layers.py grid --data "$DATA/bench_data.npz" --out "$RAW" \
    --workers "$WORKERS" --seeds "$SEEDS" --budget "$BUDGET" \
    --trl-ranks 0.03 0.1 0.2 0.4 0.7 1.0 \
    --tcl-trl-ranks 0.15 0.5 1.0 \
    --net-ranks 0.1 0.2 0.33 0.5 0.75 \
    --net-factorizations cp tucker tt \
    ${GRID_ARGS:-} 2>&1 | tee -a "$OUT/grid.log"
status=$?
cat "$RAW"/*.jsonl > "$OUT/records.jsonl" 2>/dev/null
cp "$RAW/grid.json" "$OUT/grid.json" 2>/dev/null || echo "no grid.json (see grid.log); records.jsonl has the raw lines" >&2
"$PY" - "$OUT/grid.json" <<'EOF' 2>&1 | tee -a "$OUT/grid.log"
import json, sys
grid = json.load(open(sys.argv[1]))
meta, records = grid["meta"], grid["records"]
print(f"{len(records)} records, complete={meta['complete']}, {meta['seconds']:.0f} s on {meta['device']}")
for r in sorted(records, key=lambda r: (r["dataset"], r["method"], str(r["factorization"]), r["rank"] or 0, r["seed"])):
    print(r["dataset"], r["seed"], r["method"], r["factorization"], r["rank"], f"{r['acc']:.4f}", r["params"], r["head_params"])
EOF
exit $status
