"""Accuracy of Signum majority vote vs SGD-momentum all-reduce and PowerSGD, and under a sign-flipping worker.

Real DDP training with gloo processes on CPU, our hook and the anchors' hooks in the same script:

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
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, str(Path(__file__).parent))

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


def _worker(rank: int, world: int, port: int, out: str, run: dict[str, Any], args: argparse.Namespace) -> None:
    from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook

    from trinity_lightning.distributed import Signum, register_signsgd_hook
    from trinity_lightning.models.resnet import CifarResNet

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    x_train, y_train, x_test, y_test = _data(args)
    shard = torch.arange(rank, len(y_train), world)  # disjoint i.i.d. shards
    x_train, y_train = x_train[shard], y_train[shard]
    torch.manual_seed(args.seed)
    model = DistributedDataParallel(CifarResNet(depth=8, width=args.width), bucket_cap_mb=1)
    adversary = bool(run.get("adversary")) and rank == world - 1
    if run["method"] == "signum":
        register_signsgd_hook(model, momentum=0.9, flip_signs=adversary)
        optimizer: torch.optim.Optimizer = Signum(
            model.parameters(), lr=args.signum_lr, momentum=0.0, weight_decay=args.signum_wd
        )
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=args.sgd_lr, momentum=0.9, weight_decay=5e-4)
        if run["method"] == "powersgd":
            state = powerSGD_hook.PowerSGDState(process_group=None, matrix_approximation_rank=4, start_powerSGD_iter=2)
            model.register_comm_hook(state, powerSGD_hook.powerSGD_hook)
        elif run.get("adversary"):  # every rank uses the same averaging hook; only the adversary negates
            model.register_comm_hook(adversary, _averaging_hook)
    steps_per_epoch = len(y_train) // args.batch
    total = steps_per_epoch * args.epochs
    base_lr = [g["lr"] for g in optimizer.param_groups]
    generator = torch.Generator().manual_seed(args.seed * 100 + rank)
    curve, step, start = [], 0, time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(y_train), generator=generator)
        for i in range(steps_per_epoch):
            idx = order[i * args.batch : (i + 1) * args.batch]
            x, y = x_train[idx], y_train[idx]
            flip = torch.rand(len(idx), generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            for group, lr in zip(optimizer.param_groups, base_lr, strict=True):
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            step += 1
        model.eval()
        with torch.no_grad():
            correct = sum(
                int((model.module(x_test[j : j + 500]).argmax(1) == y_test[j : j + 500]).sum())
                for j in range(0, len(y_test), 500)
            )
        curve.append(100.0 * correct / len(y_test))
        if rank == 0:
            print(f"  epoch {epoch + 1}: test acc {curve[-1]:.2f}%  ({time.perf_counter() - start:.0f}s)", flush=True)
    if rank == 0:
        Path(out).write_text(
            json.dumps({"curve": curve, "final": curve[-1], "seconds": time.perf_counter() - start, "steps": total})
        )
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _epochs(name: str, args: argparse.Namespace) -> int:
    return int(args.byzantine_epochs or args.epochs) if RUNS[name]["world"] == 3 else int(args.epochs)


def run_one(name: str, args: argparse.Namespace, cache: Path) -> dict[str, Any]:
    epochs = _epochs(name, args)
    path = cache / f"{name}_seed{args.seed}_e{epochs}.json"
    if path.is_file() and not args.fresh:
        return dict(json.loads(path.read_text()))
    run = RUNS[name]
    args = argparse.Namespace(**{**vars(args), "epochs": epochs})
    print(f"{name}:", flush=True)
    mp.start_processes(
        _worker,
        args=(run["world"], _free_port(), str(path), run, args),
        nprocs=run["world"],
        join=True,
        start_method="spawn",
    )
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
    from _results import RESULTS_DIR, machine

    epochs = int(args.extra_budget)
    if epochs < 1:
        raise SystemExit(f"--extra-budget: expected a positive number of epochs, got {epochs}")
    path = RESULTS_DIR / "signsgd_accuracy.json"
    if not path.is_file():
        raise SystemExit(f"--extra-budget adds to {path}, which does not exist: run the full benchmark first")
    cache = Path(tempfile.gettempdir()) / "signsgd_acc"
    cache.mkdir(exist_ok=True)
    args = argparse.Namespace(**{**vars(args), "byzantine_epochs": epochs})
    clean = run_one("signum_mv_w3", args, cache)
    adversary = run_one("signum_mv_w3_adversary", args, cache)
    delta = adversary["final"] - clean["final"]
    print(f"{epochs} epochs: clean {clean['final']:.2f}%, adversary {adversary['final']:.2f}%, delta {delta:.2f}")
    payload = json.loads(path.read_text())
    budgets = payload["details"].setdefault("three_worker_runs_at_other_budgets", {})
    budgets[f"{epochs}_epochs"] = {
        "command": "python " + " ".join([os.path.relpath(sys.argv[0]), *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "protocol": "as details.protocol (same data, model, learning rates, momentum, weight decay, batch, seed), "
        f"cosine schedule over {epochs} epochs; only the Signum majority-vote pair",
        "signum_mv_w3": clean,
        "signum_mv_w3_adversary": adversary,
        "delta": delta,
        "note": "not the claim: byzantine_1_of_3_accuracy_delta stays the 12-epoch pair of the main run",
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    os.replace(tmp, path)
    print(f"updated {path}")


def byzantine_seeds(args: argparse.Namespace) -> None:
    """Re-measure the 3-worker vote pair (clean, adversary) at the claim's budget over several seeds.

    The claim ``byzantine_1_of_3_accuracy_delta`` becomes the mean over the seeds of the results file's own run
    (``details.protocol.seed``) and these; the per-seed pairs go to ``details.byzantine_seeds``.
    """
    from _results import RESULTS_DIR, machine

    path = RESULTS_DIR / "signsgd_accuracy.json"
    if not path.is_file():
        raise SystemExit(f"--byzantine-seeds adds to {path}, which does not exist: run the full benchmark first")
    payload = json.loads(path.read_text())
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
        "command": "python " + " ".join([os.path.relpath(sys.argv[0]), *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "epochs": epochs,
        "pairs": pairs,
        "delta_mean": adversary_mean - clean_mean,
        "delta_sd": statistics.stdev(p["delta"] for p in pairs.values()) if len(pairs) > 1 else None,
    }
    for claim in payload["claims"]:
        if claim["id"] == "byzantine_1_of_3_accuracy_delta":
            claim["what"] = (
                f"final test accuracy (%), 3 workers, one negating its signs every step, minus the clean 3-worker "
                f"run (Signum majority vote), {epochs} epochs, mean of {len(pairs)} seeds "
                f"({', '.join(pairs)}; per seed in details.byzantine_seeds)"
            )
            claim["ours"], claim["anchor"] = adversary_mean, clean_mean
            claim["delta"] = adversary_mean - clean_mean
            claim["met"] = claim["delta"] >= claim["target_delta"]
            claim["seed0_delta"] = pairs[str(protocol["seed"])]["delta"]
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    os.replace(tmp, path)
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
    args = parser.parse_args()
    if args.byzantine_seeds is not None:
        byzantine_seeds(args)
        return
    if args.extra_budget is not None:
        extra_budget(args)
        return
    from _results import claim, write_results

    if args.quick:
        args.epochs, args.train_size, args.test_size = 1, 2000, 500
    cache = Path(tempfile.gettempdir()) / ("signsgd_acc_quick" if args.quick else "signsgd_acc")
    cache.mkdir(exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    protocol = {
        k: getattr(args, k)
        for k in (
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
    }
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
    figure = (
        Path(__file__).resolve().parents[1] / "docs" / "img" / ("signsgd_quick.png" if args.quick else "signsgd.png")
    )
    plot(results, figure)
    other = {}  # the same 3-worker runs at other epoch budgets, when they were run
    for file in sorted(cache.glob(f"*_w3*_seed{args.seed}_e*.json")):
        name, epochs = file.stem.rsplit(f"_seed{args.seed}_e", 1)
        if int(epochs) != _epochs(name, args):
            other.setdefault(f"{epochs}_epochs", {})[name] = json.loads(file.read_text())["final"]
    details = {
        "protocol": protocol,
        "runs": results,
        "plot": str(figure.relative_to(figure.parents[2])),
        "three_worker_runs_at_other_budgets": other,
    }
    if not args.quick:
        path = write_results("signsgd_accuracy", claims, details)
        print(f"wrote {path}")
    for c in claims:
        print(c["id"], c["ours"], c["anchor"], "delta", round(c["delta"], 2), "met" if c["met"] else "NOT met")


if __name__ == "__main__":
    main()
