"""Accuracy of Signum majority vote vs SGD-momentum all-reduce and PowerSGD, and under a sign-flipping worker.

Real DDP training with gloo processes on CPU, each run written as a user writes it: ``Trainer(strategy=
"ddp_signsgd", devices=W)`` (:class:`~trinity_lightning.distributed.SignSGDStrategy`, Signum's momentum moved into
the hook) for the vote, ``Trainer(strategy="ddp", devices=W)`` for the anchors with torch's hooks registered on the
wrapped model (Lightning registers comm hooks on CUDA only); one process per run, Lightning's launcher starts the
other workers. The loop is the benchmarks' harness (``_harness.Supervised``):

* 2 workers: SGD with momentum + fp32 all-reduce (DDP default), SGD + PowerSGD rank 4 (torch hook),
  Signum majority vote (our hook, local momentum 0.9) -> claim ``accuracy_vs_sgd_allreduce``.
* 3 workers, clean and with rank 2 negating what it sends every step, for the vote and for averaged SGD
  -> claim ``byzantine_1_of_3_accuracy_delta`` (adversary run minus clean run of the vote).

Scaled down for a shared 2-core CPU (stated in the results): CIFAR-10 (shared lossy-JPEG copy), a 10,000-image
training subset split evenly across workers, 2,000 test images, ResNet-8 of width 8, random flips, batch 64 per
worker, cosine learning-rate decay, the same epochs for every method; learning rates are the usual ones for each
optimizer (SGD 0.1, Signum 2e-3), not tuned here.

    python benchmarks/signsgd_accuracy.py            # all 7 runs, ~15 minutes of 2 cores
    python benchmarks/signsgd_accuracy.py --quick    # 1 epoch on 2,000 images (a smoke test)
    python benchmarks/signsgd_accuracy.py --extra-budget 24   # only the 3-worker vote pair at 24 epochs

``--extra-budget E`` runs only the clean and adversary 3-worker Signum runs at ``E`` epochs (same
hyper-parameters as the claim runs, the cosine schedule stretched to ``E`` epochs) and adds them to
``details.three_worker_runs_at_other_budgets`` of the existing results file; the claims are left as they are.
At 24 epochs the pair took 9 minutes on the shared 2-core machine (clean 7 min under load, adversary 2 min).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader, Sampler, TensorDataset

sys.path.insert(0, str(Path(__file__).parent))
from _harness import Supervised, accuracy, quiet, trainer
from _results import RESULTS_DIR, claim, command_line, machine, read_results, write_json, write_results

PROTOCOL_KEYS = (
    "epochs",
    "byzantine_epochs",
    "train_size",
    "test_size",
    "width",
    "batch",
    "sgd_lr",
    "signum_lr",
    "signum_wd",
    "seed",
)

RUNS: dict[str, dict[str, Any]] = {
    "sgd_allreduce_w2": {"world": 2, "method": "sgd"},
    "powersgd_r4_w2": {"world": 2, "method": "powersgd"},
    "signum_mv_w2": {"world": 2, "method": "signum"},
    "signum_mv_w3": {"world": 3, "method": "signum"},
    "signum_mv_w3_adversary": {"world": 3, "method": "signum", "adversary": True},
    "sgd_allreduce_w3": {"world": 3, "method": "sgd"},
    "sgd_allreduce_w3_adversary": {"world": 3, "method": "sgd", "adversary": True},
}


def _averaging_hook(negate: bool, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """Averaging all-reduce (as DDP's default); a worker with ``negate`` sends minus its gradient (the adversary)."""
    tensor = bucket.buffer().div_(-dist.get_world_size() if negate else dist.get_world_size())
    return dist.all_reduce(tensor, async_op=True).get_future().then(lambda fut: fut.value()[0])


_averaging_hook.__annotations__.update(bucket=dist.GradBucket, **{"return": torch.futures.Future[torch.Tensor]})


def _data(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from trinity_lightning.data import load_cifar10

    train, test = load_cifar10("train"), load_cifar10("test")
    rng = np.random.default_rng(0)
    tr = rng.permutation(len(train.labels))[: args.train_size]
    te = rng.permutation(len(test.labels))[: args.test_size]
    mean = np.array([0.49, 0.48, 0.45], dtype=np.float32) * 255
    std = np.array([0.25, 0.24, 0.26], dtype=np.float32) * 255

    def prep(images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((images.astype(np.float32) - mean) / std).transpose(0, 3, 1, 2).copy())

    return (
        prep(train.images[tr]),
        torch.from_numpy(train.labels[tr]),
        prep(test.images[te]),
        torch.from_numpy(test.labels[te]),
    )


class _Shuffled(Sampler[int]):
    """One ``torch.randperm`` of the shard per epoch from the worker's generator (which also draws the flips)."""

    def __init__(self, n: int, generator: torch.Generator) -> None:
        self.n, self.generator = n, generator

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        yield from torch.randperm(self.n, generator=self.generator).tolist()


class ShardedCifar(pl.LightningDataModule):
    """Each worker's disjoint i.i.d. shard (``arange(rank, N, world)``), shuffled every epoch, last batch dropped.

    The worker's generator (seeded ``seed * 100 + rank``) draws the epoch's order and the random flips
    (:meth:`flip`), as a hand-written loop would.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int) -> None:
        super().__init__()
        self.x, self.y, self.batch_size, self.seed = x, y, batch_size, seed
        self.generator = torch.Generator()

    def train_dataloader(self) -> DataLoader:
        assert self.trainer is not None, "ShardedCifar: the train loader is built by a Trainer"
        rank, world = self.trainer.global_rank, self.trainer.world_size
        shard = torch.arange(rank, len(self.y), world)
        self.generator.manual_seed(self.seed * 100 + rank)
        data = TensorDataset(self.x[shard], self.y[shard])
        return DataLoader(
            data, batch_size=self.batch_size, sampler=_Shuffled(len(data), self.generator), drop_last=True
        )

    def flip(self, x: torch.Tensor) -> torch.Tensor:
        """Random horizontal flips, half of the batch on average."""
        flip = torch.rand(len(x), generator=self.generator) < 0.5
        return torch.where(flip[:, None, None, None], x.flip(3), x)


class WorkerSetup(Callback):
    """What a run sets on the DDP model once Lightning has wrapped it: the anchors' hooks, the adversary."""

    def __init__(self, run: dict[str, Any]) -> None:
        self.run = run

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook

        adversary = bool(self.run.get("adversary")) and trainer.global_rank == trainer.world_size - 1
        strategy: Any = trainer.strategy
        if self.run["method"] == "signum":  # SignSGDStrategy registered the vote; the adversary flips its signs
            strategy.signsgd_state.flip_signs = adversary
        elif self.run["method"] == "powersgd":  # Lightning registers comm hooks on CUDA only
            state = powerSGD_hook.PowerSGDState(process_group=None, matrix_approximation_rank=4, start_powerSGD_iter=2)
            strategy.model.register_comm_hook(state, powerSGD_hook.powerSGD_hook)
        elif self.run.get("adversary"):  # every rank uses the same averaging hook; only the adversary negates
            strategy.model.register_comm_hook(adversary, _averaging_hook)


class TestCurve(Callback):
    """Test accuracy (%) of the whole test subset after every epoch, printed and kept on rank 0."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y, self.start = x, y, time.perf_counter()
        self.curve: list[float] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.curve.append(100.0 * accuracy(pl_module, self.x, self.y, batch_size=500))
        if trainer.global_rank == 0:
            print(
                f"  epoch {len(self.curve)}: test acc {self.curve[-1]:.2f}%  ({time.perf_counter() - self.start:.0f}s)"
            )


def train_run(name: str, args: argparse.Namespace, out: Path) -> None:
    """One run as a user writes it: ``Trainer(strategy="ddp_signsgd" | "ddp", devices=world)`` on gloo CPU workers.

    Lightning starts the other workers by running this same command again (its ``popen`` launcher); rank 0 writes
    ``out`` (curve, final accuracy, seconds, steps).
    """
    from trinity_lightning.distributed import Signum
    from trinity_lightning.models.resnet import CifarResNet

    torch.set_num_threads(1)
    quiet()
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    run = RUNS[name]
    x_train, y_train, x_test, y_test = _data(args)
    data = ShardedCifar(x_train, y_train, args.batch, args.seed)
    torch.manual_seed(args.seed)
    net = CifarResNet(depth=8, width=args.width)
    total = (len(y_train) // run["world"]) // args.batch * args.epochs

    def optimizer(params: Any) -> torch.optim.Optimizer:
        if run["method"] == "signum":  # the strategy moves this momentum into the hook (each worker's own)
            return Signum(params, lr=args.signum_lr, momentum=0.9, weight_decay=args.signum_wd)
        return torch.optim.SGD(params, lr=args.sgd_lr, momentum=0.9, weight_decay=5e-4)

    module = Supervised(
        net, optimizer, lr_factor=lambda step: 0.5 * (1 + math.cos(math.pi * step / total)), augment=data.flip
    )
    curve = TestCurve(x_test, y_test)
    fit = trainer(
        accelerator="cpu",
        devices=run["world"],
        strategy="ddp_signsgd" if run["method"] == "signum" else "ddp",
        max_epochs=args.epochs,
        limit_val_batches=0,
        use_distributed_sampler=False,
        callbacks=[WorkerSetup(run), curve],
    )
    fit.fit(module, datamodule=data)
    if fit.global_rank == 0:
        result = {"curve": curve.curve, "final": curve.curve[-1], "seconds": time.perf_counter() - curve.start}
        write_json(out, {**result, "steps": total}, indent=None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _epochs(name: str, args: argparse.Namespace) -> int:
    return int(args.byzantine_epochs or args.epochs) if RUNS[name]["world"] == 3 else int(args.epochs)


def run_one(name: str, args: argparse.Namespace, cache: Path) -> dict[str, Any]:
    """Run ``name`` in a fresh process (``--one``), unless ``cache`` already holds its result."""
    epochs = _epochs(name, args)
    path = cache / f"{name}_seed{args.seed}_e{epochs}.json"
    if path.is_file() and not args.fresh:
        return dict(json.loads(path.read_text()))
    print(f"{name}:", flush=True)
    one = {key: getattr(args, key) for key in PROTOCOL_KEYS} | {"epochs": epochs}
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    command = [sys.executable, str(Path(__file__).resolve()), "--one", name, "--out", str(path)]
    subprocess.run([*command, "--one-args", json.dumps(one)], check=True, env=env)
    return dict(json.loads(path.read_text()))


def plot(results: dict[str, dict[str, Any]], target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    colors = {"sgd_allreduce": "tab:blue", "powersgd_r4": "tab:orange", "signum_mv": "tab:green"}
    for name in ("sgd_allreduce_w2", "powersgd_r4_w2", "signum_mv_w2"):
        if name in results:
            curve, method = results[name]["curve"], name.replace("_w2", "")
            axes[0].plot(range(1, len(curve) + 1), curve, marker="o", color=colors[method], label=method)
    axes[0].set_title("2 workers, CIFAR-10 subset, ResNet-8")
    for name in ("signum_mv_w3", "signum_mv_w3_adversary", "sgd_allreduce_w3", "sgd_allreduce_w3_adversary"):
        if name in results:
            curve, method = results[name]["curve"], name.split("_w3")[0]
            adversary = name.endswith("adversary")
            axes[1].plot(
                range(1, len(curve) + 1),
                curve,
                "--" if adversary else "-",
                marker="o",
                color=colors[method],
                label=method + (" + 1 adversary" if adversary else ""),
            )
    axes[1].set_title("3 workers; adversary negates what it sends")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("test accuracy (%)")
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=110)


def extra_budget(args: argparse.Namespace) -> None:
    """Run the clean + adversary 3-worker vote pair at ``args.extra_budget`` epochs; merge into the results file."""
    epochs = int(args.extra_budget)
    if epochs < 1:
        raise SystemExit(f"--extra-budget: expected a positive number of epochs, got {epochs}")
    payload = read_results("signsgd_accuracy")
    cache = Path(tempfile.gettempdir()) / "signsgd_acc"
    cache.mkdir(exist_ok=True)
    args = argparse.Namespace(**{**vars(args), "byzantine_epochs": epochs})
    clean = run_one("signum_mv_w3", args, cache)
    adversary = run_one("signum_mv_w3_adversary", args, cache)
    delta = adversary["final"] - clean["final"]
    print(f"{epochs} epochs: clean {clean['final']:.2f}%, adversary {adversary['final']:.2f}%, delta {delta:.2f}")
    budgets = payload["details"].setdefault("three_worker_runs_at_other_budgets", {})
    budgets[f"{epochs}_epochs"] = {
        "command": command_line(),
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "protocol": "as details.protocol (same data, model, learning rates, momentum, weight decay, batch, seed), "
        f"cosine schedule over {epochs} epochs; only the Signum majority-vote pair",
        "signum_mv_w3": clean,
        "signum_mv_w3_adversary": adversary,
        "delta": delta,
        "note": "not the claim: byzantine_1_of_3_accuracy_delta stays the 12-epoch pair of the main run",
    }
    print(f"updated {write_json(RESULTS_DIR / 'signsgd_accuracy.json', payload)}")


def byzantine_seeds(args: argparse.Namespace) -> None:
    """Re-measure the 3-worker vote pair (clean, adversary) at the claim's budget over several seeds.

    The claim ``byzantine_1_of_3_accuracy_delta`` becomes the mean over the seeds of the results file's own run
    (``details.protocol.seed``) and these; the per-seed pairs go to ``details.byzantine_seeds``.
    """
    payload = read_results("signsgd_accuracy")
    protocol = payload["details"]["protocol"]
    epochs = int(protocol["byzantine_epochs"] or protocol["epochs"])
    cache = Path(tempfile.gettempdir()) / "signsgd_acc"
    cache.mkdir(exist_ok=True)
    runs = payload["details"]["runs"]
    pairs = {
        str(protocol["seed"]): {
            "clean": runs["signum_mv_w3"]["final"],
            "adversary": runs["signum_mv_w3_adversary"]["final"],
        }
    }
    for seed in args.byzantine_seeds:
        if str(seed) in pairs:
            continue
        seeded = argparse.Namespace(**{**vars(args), "seed": seed, "byzantine_epochs": epochs})
        for key in ("train_size", "test_size", "width", "batch", "signum_lr", "signum_wd"):
            setattr(seeded, key, protocol[key])
        clean = run_one("signum_mv_w3", seeded, cache)
        adversary = run_one("signum_mv_w3_adversary", seeded, cache)
        pairs[str(seed)] = {"clean": clean["final"], "adversary": adversary["final"]}
        print(f"seed {seed}: clean {clean['final']:.2f}%, adversary {adversary['final']:.2f}%", flush=True)
    for pair in pairs.values():
        pair["delta"] = pair["adversary"] - pair["clean"]
    clean_mean = statistics.mean(p["clean"] for p in pairs.values())
    adversary_mean = statistics.mean(p["adversary"] for p in pairs.values())
    payload["details"]["byzantine_seeds"] = {
        "command": command_line(),
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "epochs": epochs,
        "pairs": pairs,
        "delta_mean": adversary_mean - clean_mean,
        "delta_sd": statistics.stdev(p["delta"] for p in pairs.values()) if len(pairs) > 1 else None,
    }
    for entry in payload["claims"]:
        if entry["id"] == "byzantine_1_of_3_accuracy_delta":
            entry["what"] = (
                f"final test accuracy (%), 3 workers, one negating its signs every step, minus the clean 3-worker "
                f"run (Signum majority vote), {epochs} epochs, mean of {len(pairs)} seeds "
                f"({', '.join(pairs)}; per seed in details.byzantine_seeds)"
            )
            entry["ours"], entry["anchor"] = adversary_mean, clean_mean
            entry["delta"] = adversary_mean - clean_mean
            entry["met"] = entry["delta"] >= entry["target_delta"]
            entry["seed0_delta"] = pairs[str(protocol["seed"])]["delta"]
    path = write_json(RESULTS_DIR / "signsgd_accuracy.json", payload)
    print(f"updated {path}: delta {adversary_mean - clean_mean:.2f} over {len(pairs)} seeds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--fresh", action="store_true", help="ignore cached finished runs")
    parser.add_argument("--runs", nargs="*", default=list(RUNS))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument(
        "--byzantine-epochs", type=int, default=None, help="epochs of the 3-worker runs (default: --epochs)"
    )
    parser.add_argument("--train-size", type=int, default=10000)
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--sgd-lr", type=float, default=0.1)
    parser.add_argument("--signum-lr", type=float, default=2e-3)
    parser.add_argument("--signum-wd", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--extra-budget",
        type=int,
        default=None,
        metavar="EPOCHS",
        help="run only the 3-worker vote pair (clean, adversary) at EPOCHS epochs and add it to the details of "
        "the existing results file, claims unchanged",
    )
    parser.add_argument(
        "--byzantine-seeds",
        type=int,
        nargs="+",
        default=None,
        metavar="SEED",
        help="run only the 3-worker vote pair at the claim's budget for these seeds and make the Byzantine claim "
        "the mean over them and the results file's own seed",
    )
    parser.add_argument(
        "--out-dir", type=Path, default=None, help="write the results file and plot here (default: the repository's)"
    )
    parser.add_argument("--one", choices=list(RUNS), help=argparse.SUPPRESS)  # a single run, in its own process
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--one-args", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        train_run(args.one, argparse.Namespace(**json.loads(args.one_args)), Path(args.out))
        return
    if args.byzantine_seeds is not None:
        byzantine_seeds(args)
        return
    if args.extra_budget is not None:
        extra_budget(args)
        return
    if args.quick:
        args.epochs, args.train_size, args.test_size = 1, 2000, 500
    cache = Path(tempfile.gettempdir()) / ("signsgd_acc_quick" if args.quick else "signsgd_acc")
    cache.mkdir(exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    protocol = {k: getattr(args, k) for k in PROTOCOL_KEYS}
    protocol.update(
        model="CifarResNet(depth=8)",
        data="CIFAR-10 shared lossy-JPEG copy, random training subset split evenly across workers, random test subset",
        augmentation="random horizontal flip",
        schedule="cosine to 0",
        sgd="momentum 0.9, weight decay 5e-4",
        signum="local momentum 0.9 in the hook, decoupled weight decay",
        powersgd="torch PowerSGDState(rank 4, start_powerSGD_iter=2, error feedback, warm start)",
        adversary="rank 2 of 3 negates every sign it sends (vote) / every gradient it sends (SGD)",
        note="scaled down for a shared 2-core CPU; learning rates not tuned here",
    )
    for name in args.runs:
        results[name] = run_one(name, args, cache)
        print(f"{name}: final {results[name]['final']:.2f}%", flush=True)
    claims = []
    if {"sgd_allreduce_w2", "signum_mv_w2"} <= results.keys():
        claims.append(
            claim(
                "accuracy_vs_sgd_allreduce",
                "final test accuracy (%), 2 workers: Signum majority vote "
                "minus SGD-momentum with fp32 all-reduce (same epochs, same data)",
                ours=results["signum_mv_w2"]["final"],
                anchor=results["sgd_allreduce_w2"]["final"],
                unit="%",
                better="higher",
                target_delta=-1.0,
                powersgd_r4=results.get("powersgd_r4_w2", {}).get("final"),
            )
        )
    if {"signum_mv_w3", "signum_mv_w3_adversary"} <= results.keys():
        sgd_clean = results.get("sgd_allreduce_w3", {}).get("final")
        sgd_adv = results.get("sgd_allreduce_w3_adversary", {}).get("final")
        claims.append(
            claim(
                "byzantine_1_of_3_accuracy_delta",
                "final test accuracy (%), 3 workers, one negating "
                "its signs every step, minus the clean 3-worker run (Signum majority vote)",
                ours=results["signum_mv_w3_adversary"]["final"],
                anchor=results["signum_mv_w3"]["final"],
                unit="%",
                better="higher",
                target_delta=-2.0,
                sgd_clean=sgd_clean,
                sgd_adversary=sgd_adv,
                sgd_delta=None if sgd_clean is None or sgd_adv is None else sgd_adv - sgd_clean,
            )
        )
    figure = (args.out_dir or Path(__file__).resolve().parents[1] / "docs" / "img") / (
        "signsgd_quick.png" if args.quick else "signsgd.png"
    )
    plot(results, figure)
    other: dict[str, dict[str, Any]] = {}  # the same 3-worker runs at other epoch budgets, when they were run
    for file in sorted(cache.glob(f"*_w3*_seed{args.seed}_e*.json")):
        name, epochs = file.stem.rsplit(f"_seed{args.seed}_e", 1)
        if int(epochs) != _epochs(name, args):
            other.setdefault(f"{epochs}_epochs", {})[name] = json.loads(file.read_text())["final"]
    details = {
        "protocol": protocol,
        "runs": results,
        "plot": str(figure.relative_to(figure.parents[2])) if args.out_dir is None else str(figure),
        "three_worker_runs_at_other_budgets": other,
    }
    if not args.quick:
        path = write_results("signsgd_accuracy", claims, details, results_dir=args.out_dir)
        print(f"wrote {path}")
    for c in claims:
        print(c["id"], c["ours"], c["anchor"], "delta", round(c["delta"], 2), "met" if c["met"] else "NOT met")


if __name__ == "__main__":
    main()
