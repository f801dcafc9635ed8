"""Tensor compression under the papers' set-ups: a VGG-style FC head vs TRL / TCL+TRL, and a whole tensorized net.

Two questions, one network (``Net``, VGG-style): a conv trunk ``conv 32 - pool - conv 64 - pool - conv 128 - pool``
(BatchNorm + ReLU after each conv) turning a 32x32 CIFAR-10 image into a ``(128, 4, 4)`` activation, then a head.

1. The head (Kossaifi et al., "Tensor regression networks", JMLR 2020; "Tensor contraction layers", 2017): the
   dense head is VGG's fully connected block, ``flatten -> FC 512 -> ReLU -> FC 10`` (1.05M parameters). It is
   replaced, trunk unchanged and everything trained end to end from scratch, by

   * ``trl``: :class:`~trinity_lightning.tensor.TensorRegressionLayer` on the un-pooled ``(128, 4, 4)``
     activation (Tucker, ``--trl-ranks`` fractions of its 20,480 weights),
   * ``tcl+trl``: :class:`~trinity_lightning.tensor.TensorContractionLayer` to ``(64, 4, 4)`` then a TRL,
   * ``gap+fc`` (reported beside, not a tensor method): global average pooling + FC 10.

2. The whole network (the compression papers train over-parameterized nets end to end): the dense net above has
   1.15M parameters. :func:`~trinity_lightning.tensor.tensorize` replaces every conv and linear layer by a Tucker
   factorization at ``--net-rank`` (fraction of each layer's weights), either

   * ``scratch``: tensorized at initialisation (the factors of the random init) and trained the full schedule, or
   * ``finetune``: the trained dense net decomposed, then fine-tuned for ``--finetune-fraction`` (>= 0.25) of the
     schedule at the schedule's mid learning rate, cosine to 0.

Iso-accuracy, exactly: a variant is "at iso-accuracy" when its mean test accuracy over the seeds is at least the
dense model's mean minus 1 point. The claim's ratio is (dense parameters) / (parameters of the smallest variant at
iso-accuracy); the dense model itself is always at iso-accuracy, so the ratio is 1.0 when no variant is.
``trl_head_param_ratio_at_iso_accuracy`` counts head parameters (the trunk is the same for every head);
``tensorized_net_param_ratio_at_iso_accuracy`` counts every parameter of the net.

Training: AdamW lr 2e-3, weight decay 5e-4, batch 128, cosine to 0, random flips and 4-pixel crops; every variant
gets the same epochs and data per seed. Scales (``--scale``):

* ``paper``: the full CIFAR-10 training split (50,000), the full test split, 30 epochs, 3 seeds (about 8 h of one
  CPU core per seed; minutes on a GPU).
* ``cpu``: 10,000 training images, 4,000 test images, 8 epochs, 3 seeds (about 40 min of one idle core).
* ``smoke``: 1,000 images, 1 epoch, 1 seed (a wiring check).

    python benchmarks/tensor_compression.py --scale smoke
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).parent))
from _harness import Supervised, accuracy, quiet, trainer
from _results import RESULTS_DIR, claim, write_json, write_results
from signsgd_byzantine import cifar_subsets

SCALES: dict[str, dict[str, Any]] = {
    "smoke": {"train_size": 1000, "test_size": 500, "epochs": 1, "seeds": [0]},
    "cpu": {"train_size": 10000, "test_size": 4000, "epochs": 8, "seeds": [0, 1, 2]},
    "paper": {"train_size": 50000, "test_size": 10000, "epochs": 30, "seeds": [0, 1, 2]},
}
FEATURES = (128, 4, 4)


def trunk() -> nn.Sequential:
    """``(3, 32, 32) -> (128, 4, 4)``: three conv-BN-ReLU-maxpool blocks of 32, 64 and 128 channels."""
    layers: list[nn.Module] = []
    previous = 3
    for width in (32, 64, 128):
        layers += [nn.Conv2d(previous, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        layers.append(nn.MaxPool2d(2))
        previous = width
    return nn.Sequential(*layers)


class Net(nn.Module):
    """The VGG-style trunk (``(3, 32, 32) -> (128, 4, 4)``) and one of the heads."""

    def __init__(self, head: str, trl_rank: float = 0.1) -> None:
        super().__init__()
        from trinity_lightning.tensor import TensorContractionLayer, TensorRegressionLayer

        self.features = trunk()
        c, h, w = FEATURES
        if head == "dense":
            self.head: nn.Module = nn.Sequential(
                nn.Flatten(), nn.Linear(c * h * w, 512), nn.ReLU(inplace=True), nn.Linear(512, 10)
            )
        elif head == "trl":
            self.head = TensorRegressionLayer(FEATURES, 10, factorization="tucker", rank=trl_rank)
        elif head == "tcl+trl":
            self.head = nn.Sequential(
                TensorContractionLayer(FEATURES, (64, h, w)),
                TensorRegressionLayer((64, h, w), 10, factorization="tucker", rank=trl_rank),
            )
        elif head == "gap+fc":
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10))
        else:
            raise ValueError(f"head: expected dense, trl, tcl+trl or gap+fc, got {head!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _augment(generator: torch.Generator) -> Any:
    def augment(x: torch.Tensor) -> torch.Tensor:
        flip = torch.rand(len(x), generator=generator) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
        padded = nn.functional.pad(x, (4, 4, 4, 4))
        dx, dy = (int(v) for v in torch.randint(0, 9, (2,), generator=generator))
        return padded[:, :, dy : dy + 32, dx : dx + 32]

    return augment


def fit(net: nn.Module, data: tuple[torch.Tensor, ...], epochs: int, seed: int, lr: float = 2e-3) -> float:
    """Train ``net`` end to end (AdamW, cosine to 0, flips + crops) with a Lightning Trainer; test accuracy (%)."""
    x_train, y_train, x_test, y_test = data
    pl.seed_everything(seed, verbose=False)
    loader = DataLoader(
        TensorDataset(x_train, y_train),
        batch_size=128,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )
    total = max(1, len(loader) * epochs)
    module = Supervised(
        net,
        lambda params: torch.optim.AdamW(params, lr=lr, weight_decay=5e-4),
        lr_factor=lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total)),
        augment=_augment(torch.Generator().manual_seed(seed + 1000)),
    )
    trainer(max_epochs=epochs, accelerator="cpu", devices=1, limit_val_batches=0).fit(module, loader)
    return 100.0 * accuracy(module.net, x_test, y_test, batch_size=1000)


def run_variant(variant: str, seed: int, data: tuple[torch.Tensor, ...], args: argparse.Namespace) -> dict[str, Any]:
    """One (variant, seed): ``head:<name>[@rank]``, ``net:dense``, ``net:scratch`` or ``net:finetune``."""
    from trinity_lightning.tensor import tensorize

    tick, cpu = time.perf_counter(), time.process_time()
    torch.manual_seed(seed)
    record: dict[str, Any] = {"variant": variant, "seed": seed}
    kind, _, name = variant.partition(":")
    if kind == "head":
        head, _, rank = name.partition("@")
        net = Net(head, trl_rank=float(rank) if rank else 0.1)
        record["head_params"] = n_params(net.head)
        record["test_acc"] = fit(net, data, args.epochs, seed)
        if head == "dense":
            torch.save(net.state_dict(), args.work / f"dense_seed{seed}.pt")
    elif name == "scratch":
        net = Net("dense")
        tensorize(net, factorization="tucker", rank=args.net_rank, progress=False)
        record["test_acc"] = fit(net, data, args.epochs, seed)
    elif name == "finetune":
        net = Net("dense")
        net.load_state_dict(torch.load(args.work / f"dense_seed{seed}.pt"))
        tensorize(net, factorization="tucker", rank=args.net_rank, progress=False)
        record["decomposed_acc"] = 100.0 * accuracy(net, data[2], data[3], batch_size=1000)
        epochs = max(1, math.ceil(args.finetune_fraction * args.epochs))
        record["finetune_epochs"] = epochs
        record["test_acc"] = fit(net, data, epochs, seed, lr=1e-3)  # the mid-schedule learning rate
    else:
        raise ValueError(f"variant: {variant!r}")
    record["net_params"] = n_params(net)
    record["seconds"] = time.perf_counter() - tick
    record["cpu_seconds"] = time.process_time() - cpu
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--test-size", type=int, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--trl-ranks", type=float, nargs="+", default=[0.1, 0.03])
    parser.add_argument("--net-rank", type=float, default=0.25)
    parser.add_argument("--finetune-fraction", type=float, default=0.25)
    parser.add_argument("--parts", nargs="+", default=["head", "net"], choices=["head", "net"])
    parser.add_argument("--out", default="tensor_compression")
    parser.add_argument("--work", type=Path, default=Path("/tmp/tensor_compression"))
    parser.add_argument("--summarize-only", action="store_true")
    args = parser.parse_args()
    for key, value in SCALES[args.scale].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.finetune_fraction < 0.25:
        parser.error("--finetune-fraction: the protocol fine-tunes for at least 25% of the schedule")
    quiet()
    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    partial = RESULTS_DIR / f"{args.out}.partial.json"
    runs: list[dict[str, Any]] = json.loads(partial.read_text()) if partial.is_file() else []
    variants = ["head:dense"]
    if "head" in args.parts:
        variants += [f"head:trl@{r}" for r in args.trl_ranks] + [f"head:tcl+trl@{args.trl_ranks[0]}", "head:gap+fc"]
    if "net" in args.parts:
        variants += ["net:finetune", "net:scratch"]
    if not args.summarize_only:
        data = cifar_subsets(args.train_size, args.test_size)
        for seed in args.seeds:
            for variant in variants:
                if any(r["variant"] == variant and r["seed"] == seed for r in runs):
                    continue
                record = run_variant(variant, seed, data, args)
                runs.append(record)
                print(json.dumps(record), flush=True)
                write_json(partial, runs, indent=1)
    summarize(runs, args)


def _iso(runs: list[dict[str, Any]], candidates: list[str], size_key: str) -> dict[str, Any]:
    """Mean accuracy and size per variant; the smallest variant within 1 point of the dense one's mean."""
    table: dict[str, dict[str, Any]] = {}
    for variant in ["head:dense", *candidates]:
        rows = [r for r in runs if r["variant"] == variant]
        if not rows:
            continue
        size = rows[0][size_key]
        table[variant] = {
            "mean_acc": statistics.mean(r["test_acc"] for r in rows),
            "per_seed": [r["test_acc"] for r in sorted(rows, key=lambda r: r["seed"])],
            "params": size,
        }
    dense = table["head:dense"]
    at_iso = [v for v, row in table.items() if row["mean_acc"] >= dense["mean_acc"] - 1.0]
    best = min(at_iso, key=lambda v: table[v]["params"])
    return {"table": table, "at_iso_accuracy": at_iso, "smallest_at_iso": best}


def summarize(runs: list[dict[str, Any]], args: argparse.Namespace) -> None:
    seeds = sorted({r["seed"] for r in runs})
    heads = sorted({r["variant"] for r in runs if r["variant"].startswith("head:") and r["variant"] != "head:dense"})
    tensor_heads = [v for v in heads if "trl" in v]
    nets = sorted({r["variant"] for r in runs if r["variant"].startswith("net:")})
    setting = (
        f"CIFAR-10 ({args.train_size:,} training / {args.test_size:,} test images), {args.epochs} epochs, "
        f"mean of {len(seeds)} seeds; iso-accuracy = mean test accuracy >= the dense model's mean - 1 point"
    )
    claims = []
    head = _iso(runs, tensor_heads, "head_params")
    dense_head = head["table"]["head:dense"]
    smallest = head["table"][head["smallest_at_iso"]]
    claims.append(
        claim(
            "trl_head_param_ratio_at_iso_accuracy",
            f"{setting}: head parameters of flatten + FC 512 + FC 10 over those of the smallest TRL / TCL+TRL head "
            f"at iso-accuracy ({head['smallest_at_iso']}), trunk identical, trained end to end",
            ours=smallest["params"],
            anchor=dense_head["params"],
            better="lower",
            unit="parameters",
            target=5.0,
            variant=head["smallest_at_iso"],
            accuracy=smallest["mean_acc"],
            dense_accuracy=dense_head["mean_acc"],
        )
    )
    details: dict[str, Any] = {"heads": head}
    gap = [r["test_acc"] for r in runs if r["variant"] == "head:gap+fc"]
    details["gap_fc"] = {"mean_acc": statistics.mean(gap) if gap else None, "per_seed": gap}
    if nets:
        net = _iso(runs, nets, "net_params")
        dense_net = net["table"]["head:dense"]
        best = net["table"][net["smallest_at_iso"]]
        claims.append(
            claim(
                "tensorized_net_param_ratio_at_iso_accuracy",
                f"{setting}: parameters of the dense VGG-style net ({dense_net['params']:,}) over those of the "
                f"smallest Tucker-tensorized net at iso-accuracy ({net['smallest_at_iso']}; rank {args.net_rank} per "
                f"layer, trained factorized from scratch or decomposed then fine-tuned "
                f"{args.finetune_fraction:.0%} of the schedule)",
                ours=best["params"],
                anchor=dense_net["params"],
                better="lower",
                unit="parameters",
                target=3.0,
                variant=net["smallest_at_iso"],
                accuracy=best["mean_acc"],
                dense_accuracy=dense_net["mean_acc"],
                candidate_params={v: row["params"] for v, row in net["table"].items()},
            )
        )
        details["net"] = net
    details.update(
        runs=runs,
        seeds=seeds,
        cpu_minutes=sum(r["cpu_seconds"] for r in runs) / 60,
        wall_minutes=sum(r["seconds"] for r in runs) / 60,
        threads=1,
        scale=args.scale,
        args={k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        protocol=__doc__.strip(),
    )
    print(write_results(args.out, claims, details))
    for c in claims:
        print(c["id"], round(c["ratio"], 2), c["met"], c.get("variant"))


if __name__ == "__main__":
    main()
