"""``cp-time``: CP tensorization time, ours (``TensorizedConv.from_dense``) vs tltorch's ``FactorizedConv.from_conv``.

ResNet-18's convolutions (built here, He et al. 2016 shapes, Kaiming-normal weights as torchvision initialises
them; no pretrained weights on this machine), CP at rank 0.33 of each layer's weights. Per layer, ours and
tltorch alternate in one process (one thread each) and each records its time and the relative reconstruction
error ``||W - cp|| / ||W||``. tltorch (TensorLy ``parafac``, 100 sweeps) takes minutes per 256-channel conv and
~10x that per 512-channel conv, so by default it runs on a representative subset (the stem, one conv of each of the
64/128/256-channel stages and two 1x1 shortcuts) and ours also runs on the whole network (all 20 convolutions,
``--whole``); ``--all-layers`` times tltorch on every conv too (about 40 minutes on an idle 2-core machine).

    python benchmarks/tensor_layers.py cp-time                 # the claim (about 4 min idle, 1 thread)
    python benchmarks/tensor_layers.py cp-time --quick         # 64/128-channel layers only (a smoke test)
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

SUBSET = (
    "conv1",
    "layer1.0.conv1",
    "layer2.0.conv1",
    "layer2.0.downsample",
    "layer2.1.conv1",
    "layer3.0.downsample",
    "layer3.1.conv1",
)
QUICK = ("conv1", "layer1.0.conv1", "layer2.0.downsample", "layer2.1.conv1")


def resnet18_convs(seed: int = 0) -> dict[str, nn.Conv2d]:
    """The 20 convolutions of ResNet-18 by their torchvision names, Kaiming-normal (fan_out, relu) weights."""
    torch.manual_seed(seed)
    convs: dict[str, nn.Conv2d] = {"conv1": nn.Conv2d(3, 64, 7, 2, 3, bias=False)}
    channels = 64
    for stage, width in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            stride = 2 if block == 0 and stage > 1 else 1
            name = f"layer{stage}.{block}"
            convs[f"{name}.conv1"] = nn.Conv2d(channels, width, 3, stride, 1, bias=False)
            convs[f"{name}.conv2"] = nn.Conv2d(width, width, 3, 1, 1, bias=False)
            if stride != 1 or channels != width:
                convs[f"{name}.downsample"] = nn.Conv2d(channels, width, 1, stride, bias=False)
            channels = width
    for conv in convs.values():
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return convs


def _error(dense: torch.Tensor, rebuilt: torch.Tensor) -> float:
    return float((dense - rebuilt.reshape(dense.shape)).norm() / dense.norm())


def time_ours(conv: nn.Conv2d, rank: float) -> tuple[float, float]:
    from trinity_lightning.tensor import TensorizedConv

    start = time.perf_counter()
    layer = TensorizedConv.from_dense(conv, "cp", rank)
    elapsed = time.perf_counter() - start
    return elapsed, _error(conv.weight.detach(), layer.to_dense().weight.detach())


def time_tltorch(conv: nn.Conv2d, rank: float) -> tuple[float, float]:
    from trinity_lightning.tensor._backend import import_tltorch, pytorch_backend

    tltorch = import_tltorch()
    with pytorch_backend():
        start = time.perf_counter()
        layer = tltorch.FactorizedConv.from_conv(conv, rank=rank, factorization="cp")
        elapsed = time.perf_counter() - start
        rebuilt = layer.weight.to_tensor().detach()
    return elapsed, _error(conv.weight.detach(), rebuilt)


def run_cp_time(args: argparse.Namespace) -> None:
    import warnings

    from _results import claim, write_results

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=r"Trying to compute SVD with n_eigenvecs=")
    convs = resnet18_convs()
    names = list(convs) if args.all_layers else list(QUICK if args.quick else SUBSET)
    layers: dict[str, dict[str, Any]] = {}
    cpu_start = time.process_time()
    for name in names:
        conv = convs[name]
        ours_s, ours_err = time_ours(conv, args.rank)
        theirs_s, theirs_err = time_tltorch(conv, args.rank)
        layers[name] = {
            "shape": list(conv.weight.shape),
            "ours_s": ours_s,
            "tltorch_s": theirs_s,
            "ours_error": ours_err,
            "tltorch_error": theirs_err,
            "error_ratio": ours_err / theirs_err,
        }
        print(name, {k: round(v, 4) if isinstance(v, float) else v for k, v in layers[name].items()}, flush=True)
    whole: dict[str, Any] = {}
    if args.whole:
        from trinity_lightning.tensor import TensorizedConv

        per_layer = {}
        start = time.perf_counter()
        for name, conv in convs.items():
            t0 = time.perf_counter()
            TensorizedConv.from_dense(conv, "cp", args.rank)
            per_layer[name] = time.perf_counter() - t0
        whole = {"ours_all_20_convs_s": time.perf_counter() - start, "ours_per_layer_s": per_layer}
        print("whole network (ours):", round(whole["ours_all_20_convs_s"], 2), "s", flush=True)
    ours_total = sum(v["ours_s"] for v in layers.values())
    theirs_total = sum(v["tltorch_s"] for v in layers.values())
    worst_error_ratio = max(v["error_ratio"] for v in layers.values())
    what_layers = (
        "all 20 convolutions" if args.all_layers else f"{len(names)} of its 20 convolutions ({', '.join(names)})"
    )
    claims = [
        claim(
            "cp_tensorize_time_vs_tltorch",
            f"CP tensorization at rank 0.33 of ResNet-18 ({what_layers}; Kaiming-normal weights), one thread: "
            "tltorch FactorizedConv.from_conv time / ours (TensorizedConv.from_dense), summed over the layers; "
            f"our reconstruction error at most {100 * (worst_error_ratio - 1):+.1f}% vs tltorch's on every layer",
            ours=ours_total,
            anchor=theirs_total,
            unit="s",
            better="lower",
            target=5.0,
            error_within_5pct=bool(worst_error_ratio <= 1.05),
            worst_error_ratio=worst_error_ratio,
        )
    ]
    details = {
        "rank": args.rank,
        "threads": args.threads,
        "cpu_seconds": time.process_time() - cpu_start,
        "layers": layers,
        "median_error_ratio": statistics.median(v["error_ratio"] for v in layers.values()),
        "subset_note": None
        if args.all_layers
        else "tltorch's CP (TensorLy parafac, 100 sweeps) takes ~10 min per 512-channel conv on one core, so the "
        "claim sums a representative subset; --all-layers times every conv",
        **whole,
    }
    path = write_results(
        "cp_tensorize", claims, details, results_dir=Path(args.results_dir) if args.results_dir else None
    )
    print(f"wrote {path}")
    for c in claims:
        print(c["id"], round(c["ratio"], 2), "met" if c.get("met") else "NOT met", "error ok:", c["error_within_5pct"])


def add_parser(sub: Any) -> None:
    p = sub.add_parser("cp-time", help="CP tensorization time vs tltorch on ResNet-18's convolutions")
    p.add_argument("--rank", type=float, default=0.33)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="64/128-channel layers only")
    p.add_argument("--all-layers", action="store_true", help="tltorch on all 20 convs (about 40 min idle)")
    p.add_argument("--whole", action=argparse.BooleanOptionalAction, default=True, help="ours on all 20 convs")
    p.add_argument("--results-dir", default=None)
