"""CPU inference latency, dense vs tensorized, batch 1 and 256 (models interleaved, median of repeats)."""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from .config import DATASETS, FACTORIZATIONS
from .training import n_params


def _median_ms(model: nn.Module, x: torch.Tensor, repeats: int) -> float:
    times = []
    with torch.inference_mode():
        model(x)
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def run_latency(args: argparse.Namespace) -> None:
    from trinity_lightning.models import SmallCNN
    from trinity_lightning.tensor import TensorHeadCNN, tensorize

    torch.set_num_threads(args.threads)
    cfg = DATASETS["cifar10"]
    common = dict(in_channels=3, num_classes=10, channels=cfg["channels"], image_size=32)
    torch.manual_seed(0)
    models: dict[str, nn.Module] = {"dense": SmallCNN(**common)}
    for fact in FACTORIZATIONS:
        model = copy.deepcopy(models["dense"])
        tensorize(model, fact, args.rank, min_params=1000)
        models[f"tensorized_{fact}"] = model
    models["trl_tucker"] = TensorHeadCNN(**common, head="trl", factorization="tucker", rank=0.03)
    for m in models.values():
        m.eval()
    results: dict[str, dict[str, list[float]]] = {name: {"1": [], "256": []} for name in models}
    inputs = {"1": torch.randn(1, 3, 32, 32), "256": torch.randn(256, 3, 32, 32)}
    for _ in range(args.rounds):  # interleave models so load changes hit all of them alike
        for name, model in models.items():
            for batch, x in inputs.items():
                results[name][batch].append(
                    _median_ms(model, x, args.repeats if batch == "1" else max(3, args.repeats // 5))
                )
    summary = {name: {b: statistics.median(v) for b, v in per.items()} for name, per in results.items()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "threads": args.threads,
        "rank": args.rank,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "params": {name: n_params(m) for name, m in models.items()},
        "median_ms": summary,
        "raw_ms": results,
    }
    (out / "latency.json").write_text(json.dumps(payload, indent=1))
    print(json.dumps(summary, indent=1))
