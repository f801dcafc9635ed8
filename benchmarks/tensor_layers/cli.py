"""Tensor heads and tensorized networks: accuracy vs parameters, CPU latency, lines of code vs tltorch by hand.

Four modes, run where each fits (CPU is scarce here; the accuracy grid runs on a lent GPU machine):

    # the grid's data: seeded, class-stratified subsets of CIFAR-10 and Fashion-MNIST in one .npz (+ the
    # tensorly / tensorly-torch wheels the GPU machine lacks); .device_data/ is git-ignored, `run` carries it
    python benchmarks/tensor_layers.py prepare --out .device_data/tensor/bench_data.npz --wheels .device_data/tensor/wheels
    # accuracy grid (dense / TRL head / TCL+TRL head / whole net tensorized + fine-tuned), 3 seeds
    bash benchmarks/tensor_layers_device.sh                                  # on the GPU machine (see the script)
    python benchmarks/tensor_layers.py grid --data .device_data/tensor/bench_data.npz --out /tmp/tensor_grid
    # the grid behind the stored claims, sized for a 2-core CPU (CIFAR-10 ~95 min, Fashion-MNIST ~50 min): TRL heads
    # CP/Tucker at 10%-100% of the dense head, whole nets CP/Tucker/TT at 33%-75%, no TCL, 3 seeds
    python benchmarks/tensor_layers.py grid --data .device_data/tensor/bench_data.npz --out /tmp/cpu_grid/cifar \
        --datasets cifar10 --workers 2 --budget 5400 --head-groups trl-cp trl-tucker --trl-ranks 0.1 0.25 0.5 1.0 \
        --net-ranks 0.33 0.5 0.75        # then the same with --datasets fashion_mnist --out /tmp/cpu_grid/fmnist
    python benchmarks/tensor_layers.py report --grid /tmp/cpu_grid/cifar/grid.json /tmp/cpu_grid/fmnist/grid.json \
        --latency benchmarks/results/tensor_layers.json --keep-from benchmarks/results/tensor_layers.json
    # CPU latency, dense vs tensorized, batch 1 and 256 (interleaved, median of repeats)
    python benchmarks/tensor_layers.py latency --out /tmp/tensor_latency
    # claims + plot: benchmarks/results/tensor_layers.json, docs/img/tensor_tradeoff.png (the latency may be
    # read from a results file's details.latency: --latency benchmarks/results/tensor_layers.json)
    python benchmarks/tensor_layers.py report --grid /tmp/tensor_grid/grid.json --latency /tmp/tensor_latency/latency.json
    # recompute the claims from the committed results file alone (its details hold the per-config summaries)
    python benchmarks/tensor_layers.py report --from-results benchmarks/results/tensor_layers.json
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from .config import (
    DATASETS,
    FACTORIZATIONS,
    HEAD_GROUPS,
    NET_RANKS,
    SUBSET_PER_CLASS,
    SUBSET_SEED,
    TCL_TRL_RANKS,
    TRL_RANKS,
)
from .cp_time import add_parser as add_cp_time_parser
from .cp_time import run_cp_time
from .data import download_wheels, parse_sizes, prepare_data
from .grid import run_grid
from .latency import run_latency
from .report import run_report


def run_prepare(args: argparse.Namespace) -> None:
    info = prepare_data(Path(args.out), parse_sizes(args.sizes), args.seed)
    print(json.dumps(info, indent=1))
    if args.wheels:
        print("wheels:", download_wheels(Path(args.wheels)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    prep = sub.add_parser("prepare", help="write the grid's .npz of seeded, class-stratified subsets")
    prep.add_argument("--out", default=".device_data/tensor/bench_data.npz")
    prep.add_argument(
        "--sizes",
        nargs="+",
        default=[f"{ds}={tr}/{te}" for ds, (tr, te) in SUBSET_PER_CLASS.items()],
        help="DATASET=TRAIN/TEST images per class (default: %(default)s, the stored grid's sizes)",
    )
    prep.add_argument("--seed", type=int, default=SUBSET_SEED)
    prep.add_argument("--wheels", default=None, help="also download the tensorly + tensorly-torch wheels here")
    g = sub.add_parser("grid")
    g.add_argument("--data", default="shared", help="'shared' (trinity_lightning.data loaders) or an .npz path")
    g.add_argument("--out", required=True)
    g.add_argument("--datasets", nargs="+", default=list(DATASETS))
    g.add_argument("--seeds", type=int, default=3)
    g.add_argument(
        "--seed-list",
        nargs="+",
        type=int,
        default=None,
        help="these seeds instead of 0..seeds-1 (e.g. to finish a job a --budget cut off)",
    )
    g.add_argument("--groups", nargs="+", default=["net", "heads"], choices=["net", "heads"])
    g.add_argument(
        "--head-groups",
        nargs="+",
        default=list(HEAD_GROUPS),
        choices=list(HEAD_GROUPS),
        help="which head jobs 'heads' runs (a CPU grid drops some to fit its time)",
    )
    g.add_argument("--net-factorizations", nargs="+", default=list(FACTORIZATIONS), choices=list(FACTORIZATIONS))
    g.add_argument("--trl-ranks", nargs="+", type=float, default=list(TRL_RANKS))
    g.add_argument("--tcl-trl-ranks", nargs="+", type=float, default=list(TCL_TRL_RANKS))
    g.add_argument("--net-ranks", nargs="+", type=float, default=list(NET_RANKS))
    g.add_argument("--epochs", type=int, default=None, help="override the per-dataset epochs")
    g.add_argument("--ft-epochs", type=int, default=4)
    g.add_argument("--train-limit", type=int, default=None)
    g.add_argument("--test-limit", type=int, default=None)
    g.add_argument(
        "--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1), help="processes; 0 = in this process"
    )
    g.add_argument(
        "--budget",
        type=float,
        default=3600.0,
        help="seconds; then the pool is stopped and grid.json holds what finished (meta.complete=false)",
    )
    g.add_argument("--device", default=None)
    lat = sub.add_parser("latency")
    lat.add_argument("--out", required=True)
    lat.add_argument("--rank", type=float, default=0.33)
    lat.add_argument("--threads", type=int, default=1)
    lat.add_argument("--rounds", type=int, default=5)
    lat.add_argument("--repeats", type=int, default=30)
    rep = sub.add_parser("report")
    source = rep.add_mutually_exclusive_group(required=True)
    source.add_argument("--grid", nargs="+", help="grid.json file(s) written by the grid mode (e.g. one per dataset)")
    source.add_argument("--from-results", help="recompute the claims from a results file's details.summary")
    rep.add_argument("--plot", action="store_true", help="with --from-results: redraw the plot too")
    rep.add_argument("--latency", default=None, help="latency.json, or a results file with details.latency")
    rep.add_argument("--command", default=None)
    rep.add_argument("--results-dir", default=None, help="where tensor_layers.json goes (default benchmarks/results)")
    rep.add_argument("--plot-path", default=None, help="default docs/img/tensor_tradeoff.png")
    rep.add_argument(
        "--keep-from",
        default=None,
        help="with --grid: an earlier results file whose summaries fill in the datasets this grid did not run",
    )
    rep.add_argument("--extra", default=None, help="a reduced grid.json to attach as details (post-fix check)")
    add_cp_time_parser(sub)
    args = parser.parse_args()
    modes = {"prepare": run_prepare, "grid": run_grid, "latency": run_latency, "report": run_report}
    {**modes, "cp-time": run_cp_time}[args.mode](args)
