"""Query heuristics compared: accuracy vs labelled examples on Repeated MNIST and CIFAR-10, and BatchBALD's
selection time against baal's.

Accuracy (``--datasets``; 3 seeds): random, entropy, BALD, BatchBALD, EPIG, coreset and BADGE, each selecting
with the library's :func:`~trinity_lightning.active.scoring.select_pool` (the same code path as the
:class:`~trinity_lightning.active.ActiveLearning` callback) from a ``SmallCNN`` (dropout 0.5 before its linear
head; embeddings: the head's input, ``embedding_layer = "head.2"``), retrained from scratch after every query
(Adam, ``--steps`` steps of batch 32) in a plain PyTorch loop (the campaign's Lightning plumbing is timed in
``active_vs_baal.py``; here only the choice of examples differs between runs).

* Repeated MNIST (Kirsch et al. 2019): ``--base`` MNIST training images, each three times with isotropic Gaussian
  noise (std 0.1 on the normalized pixels): a pool full of near-duplicates, which top-k BALD queries together
  and BatchBALD avoids. Start with 2 labelled images per class, query 10 per round. Test: 2,000 MNIST test images.
* CIFAR-10 (the shared JPEG copy): ``--cifar-pool`` training images, 4 labelled per class at the start, query 20.

Claim ``batchbald_vs_bald_acc_repeated_mnist``: test accuracy at the final budget, BatchBALD - BALD, mean over the
seeds (percentage points).

Timing (``--timing``): ``batchbald_scoring_speed_vs_baal``: the time to choose ``--timing-query`` examples with
BatchBALD from the same MC probabilities (``--timing-pool`` examples, 20 samples, 10 classes, from the trained
MNIST model), ours (``BatchBALD.select``, no BALD pre-filter) vs baal 2.1's ``BatchBALD(num_samples=k,
num_draw=M).get_ranks``, the same number of sampled configurations ``M`` on both sides; interleaved, median of
``--repeats``; the overlap of the two selections is reported.

Usage:
    python benchmarks/active_strategies.py                       # everything (about 40 min on 2 busy cores)
    python benchmarks/active_strategies.py --timing              # only the timing claim (baal takes most of it)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _results import RESULTS_DIR, claim, read_results, write_results
from trinity_lightning.active import get_heuristic
from trinity_lightning.active.batch import BatchBALD
from trinity_lightning.active.scoring import select_pool
from trinity_lightning.data import load_cifar10, load_mnist
from trinity_lightning.models import SmallCNN

STRATEGIES = ("random", "entropy", "bald", "batchbald", "epig", "coreset", "badge")
KWARGS: dict[str, dict[str, Any]] = {
    "bald": {"n_samples": 20},
    "batchbald": {"n_samples": 20, "max_configurations": 1024, "candidates": 300},
    "epig": {"n_samples": 20, "n_targets": 100},
}
PAPER = "repeated_mnist_paper"  # the BatchBALD paper's protocol at a larger budget: the claim's source when present
DIAGNOSTIC = "repeated_mnist_paper_independent_masks"  # PAPER with per-example dropout masks (the library before)
IMG = Path(__file__).resolve().parents[1] / "docs" / "img" / "active_strategies.png"


def repeated_mnist(base: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    train, test = load_mnist("train"), load_mnist("test")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(train.labels), size=base, replace=False)
    x = (torch.from_numpy(train.images[pick]).float().div(255).unsqueeze(1) - 0.1307) / 0.3081
    y = torch.from_numpy(train.labels[pick]).long()
    g = torch.Generator().manual_seed(seed)
    x3 = torch.cat([x + 0.1 * torch.randn(x.shape, generator=g) for _ in range(3)])
    y3 = y.repeat(3)
    test_pick = rng.choice(len(test.labels), size=2000, replace=False)
    tx = (torch.from_numpy(test.images[test_pick]).float().div(255).unsqueeze(1) - 0.1307) / 0.3081
    return x3, y3, tx, torch.from_numpy(test.labels[test_pick]).long()


def cifar(pool: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    train, test = load_cifar10("train"), load_cifar10("test")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(train.labels), size=pool, replace=False)
    test_pick = rng.choice(len(test.labels), size=2000, replace=False)  # the test file is ordered by class
    mean = torch.tensor([0.49, 0.48, 0.45]).view(1, 3, 1, 1)
    std = torch.tensor([0.25, 0.24, 0.26]).view(1, 3, 1, 1)

    def prep(images: np.ndarray) -> torch.Tensor:
        return (torch.from_numpy(images).float().div(255).permute(0, 3, 1, 2) - mean) / std

    return (
        prep(train.images[pick]),
        torch.from_numpy(train.labels[pick]).long(),
        prep(test.images[test_pick]),
        torch.from_numpy(test.labels[test_pick]).long(),
    )


def make_model(in_channels: int, size: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = SmallCNN(in_channels, 10, (16, 32), size, dropout=0.5)
    net.embedding_layer = "head.2"  # type: ignore[assignment]  # the last linear layer's input
    return net


def train(net: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    for _ in range(steps):
        batch = torch.randint(len(x), (min(32, len(x)),), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(net(x[batch]), y[batch]).backward()
        opt.step()


@torch.inference_mode()
def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    correct = sum(int((net(x[i : i + 500]).argmax(1) == y[i : i + 500]).sum()) for i in range(0, len(x), 500))
    return 100.0 * correct / len(x)


def initial(y: torch.Tensor, per_class: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed + 1000)
    chosen: list[int] = []
    for c in range(10):
        members = np.flatnonzero(y.numpy() == c)
        chosen += rng.choice(members, size=per_class, replace=False).tolist()
    return sorted(chosen)


def copies(queried: list[list[int]], start: list[int], base: int) -> list[dict[str, int]]:
    """Per round of a Repeated MNIST campaign (pool index ``i`` is a noisy copy of base image ``i % base``): how
    many picks repeat a base image picked earlier in the same query (``in_batch``), and how many are copies of
    an image already labelled before the round (``of_labelled``). The paper's point: top-k BALD spends its query
    on copies, BatchBALD does not."""
    seen = {i % base for i in start}
    out = []
    for picks in queried:
        bases = [i % base for i in picks]
        out.append({"in_batch": len(bases) - len(set(bases)), "of_labelled": sum(b in seen for b in bases)})
        seen |= set(bases)
    return out


class _IndependentMasks:
    """The diagnostic's 'before' state: MC dropout masks drawn per example (the library before consistent masks)."""

    def __enter__(self) -> None:
        from trinity_lightning.active import scoring

        self.saved = scoring._ConsistentMasks.__enter__, scoring._ConsistentMasks.__exit__
        scoring._ConsistentMasks.__enter__ = lambda self: None  # type: ignore[assignment,method-assign]
        scoring._ConsistentMasks.__exit__ = lambda self, *exc: None  # type: ignore[assignment,method-assign]

    def __exit__(self, *exc: object) -> None:
        from trinity_lightning.active import scoring

        scoring._ConsistentMasks.__enter__, scoring._ConsistentMasks.__exit__ = self.saved  # type: ignore[method-assign]


def campaign(
    data: tuple[torch.Tensor, ...],
    name: str,
    seed: int,
    per_class: int,
    query: int,
    rounds: int,
    steps: int,
    base: int | None = None,
) -> dict[str, Any]:
    x, y, tx, ty = data
    labelled = initial(y, per_class, seed)
    start_set = list(labelled)
    strategy = get_heuristic(name, **KWARGS.get(name, {}))
    curve, times, queried = [], [], []
    for r in range(rounds + 1):
        net = make_model(x.shape[1], x.shape[-1], seed)
        train(net, x[labelled], y[labelled], steps, seed * 100 + r)
        curve.append({"labelled": len(labelled), "accuracy": round(accuracy(net, tx, ty), 3)})
        if r == rounds:
            break
        taken = set(labelled)
        pool = [i for i in range(len(x)) if i not in taken]
        strategy.begin(seed * 1_000_003 + r)
        start = time.process_time()
        loader = lambda idx: [x[idx[i : i + 500]] for i in range(0, len(idx), 500)]  # noqa: E731
        chosen = select_pool(net, pool, loader, strategy, query, labelled_indices=labelled).indices
        times.append(time.process_time() - start)
        queried.append([int(i) for i in chosen])
        labelled = sorted(labelled + chosen)
    out: dict[str, Any] = {"curve": curve, "select_cpu_s": round(sum(times), 2), "queried": queried}
    if base is not None:
        out["copies"] = copies(queried, start_set, base)
    return out


def run_dataset(dataset: str, args: argparse.Namespace, out: dict[str, Any]) -> None:
    steps = args.steps
    base: int | None = args.base
    if dataset == "repeated_mnist":
        data = repeated_mnist(args.base)
        per_class, query, rounds = 2, 10, args.rounds
    elif dataset in (PAPER, DIAGNOSTIC):
        data = repeated_mnist(args.base)
        per_class, query, rounds, steps = 2, 10, args.paper_rounds, args.paper_steps
    else:
        data = cifar(args.cifar_pool)
        per_class, query, rounds, base = 4, 20, args.cifar_rounds, None
    results = out.setdefault(dataset, {})
    seeds = [int(v) for v in args.seed_list.split(",")] if args.seed_list else range(args.seeds)
    for seed in seeds:
        for name in args.strategies:
            started = time.process_time()
            if dataset == DIAGNOSTIC:
                with _IndependentMasks():
                    run = campaign(data, name, seed, per_class, query, rounds, steps, base)
            else:
                run = campaign(data, name, seed, per_class, query, rounds, steps, base)
            run["cpu_s"] = round(time.process_time() - started, 1)
            results.setdefault(name, {})[str(seed)] = run
            dup = [c["in_batch"] + c["of_labelled"] for c in run.get("copies", [])]
            print(f"{dataset} seed {seed} {name}: {run['curve'][-1]} cpu {run['cpu_s']}s copies {dup}", flush=True)
            if args.partial:
                Path(args.partial).write_text(json.dumps(out))


def _mean_curve(runs: dict[str, Any]) -> tuple[list[int], list[float], list[float]]:
    curves = [run["curve"] for run in runs.values()]
    xs = [p["labelled"] for p in curves[0]]
    acc = np.array([[p["accuracy"] for p in c] for c in curves])
    return xs, acc.mean(0).tolist(), acc.std(0).tolist()


def plot(accuracy_runs: dict[str, Any]) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        return None
    order = [k for k in (PAPER, DIAGNOSTIC, "repeated_mnist", "cifar10") if k in accuracy_runs]
    order += [k for k in accuracy_runs if k not in order]
    cols = min(2, len(order))
    rows = (len(order) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 4.2 * rows), squeeze=False)
    for ax in axes.flat[len(order) :]:
        ax.set_visible(False)
    for ax, dataset in zip(axes.flat, order):
        per_strategy = accuracy_runs[dataset]
        for name in sorted(per_strategy, key=lambda n: STRATEGIES.index(n) if n in STRATEGIES else len(STRATEGIES)):
            runs = per_strategy[name]
            color = f"C{STRATEGIES.index(name)}" if name in STRATEGIES else None  # one colour per strategy
            xs, mean, std = _mean_curve(runs)
            ax.plot(xs, mean, marker="o", ms=3, color=color, label=f"{name} ({len(runs)} seeds)")
            ax.fill_between(xs, np.array(mean) - std, np.array(mean) + std, color=color, alpha=0.12)
        ax.set_title(dataset.replace("_", " "))
        ax.set_xlabel("labelled examples")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    IMG.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(IMG, dpi=110)
    return str(IMG.relative_to(IMG.parents[2]))


def copies_vs_samples(args: argparse.Namespace) -> dict[str, Any]:
    """One acquisition of 10 from the paper protocol's first model (20 labels, ``--paper-steps`` steps) per seed:
    the copies BALD and BatchBALD pick with 20 and with 100 MC samples (consistent masks), and BatchBALD's
    estimate of the batch's mutual information, which cannot exceed log(S) nats (S sampled networks)."""
    x, y, _, _ = repeated_mnist(args.base)
    out: dict[str, Any] = {}
    for seed in [int(v) for v in (args.seed_list or "0,1,2").split(",")]:
        labelled = initial(y, 2, seed)
        net = make_model(1, 28, seed)
        train(net, x[labelled], y[labelled], args.paper_steps, seed * 100)
        pool = [i for i in range(len(x)) if i not in set(labelled)]
        loader = lambda idx: [x[idx[i : i + 500]] for i in range(0, len(idx), 500)]  # noqa: E731
        for samples in (20, 100):
            for name in ("bald", "batchbald"):
                kwargs = {**KWARGS[name], "n_samples": samples}
                strategy = get_heuristic(name, **kwargs)
                strategy.begin(seed * 1_000_003)
                chosen = select_pool(net, pool, loader, strategy, 10, labelled_indices=labelled).indices
                c = copies([chosen], labelled, args.base)[0]
                out.setdefault(str(seed), {})[f"{name}_S{samples}"] = c
                print(f"copies_vs_samples seed {seed} {name} S={samples}: {c}", flush=True)
    return out


def timing(args: argparse.Namespace) -> dict[str, Any]:
    """BatchBALD selection time, ours vs baal, on the MC probabilities of a trained MNIST model."""
    from baal.active.heuristics import BatchBALD as BaalBatchBALD

    x, y, _, _ = repeated_mnist(args.timing_pool // 3 + 1)
    x, y = x[: args.timing_pool], y[: args.timing_pool]
    net = make_model(1, 28, 0)
    train(net, x[initial(y, 5, 0)], y[initial(y, 5, 0)], 150, 0)
    net.eval()
    from trinity_lightning.active.scoring import mc_logits

    with torch.inference_mode():
        mc = torch.cat([mc_logits(net, x[i : i + 500], 20)[0] for i in range(0, len(x), 500)], 1)
    probs_baal = mc.softmax(-1).permute(1, 2, 0).contiguous().numpy().astype(np.float64)  # (N, C, S)
    k, m = args.timing_query, args.timing_configurations
    ours_t, baal_t, overlaps = [], [], []
    for rep in range(args.repeats):
        strategy = BatchBALD(n_samples=20, max_configurations=m)
        strategy.begin(rep)
        start = time.perf_counter()
        ours = strategy.select({"mc_logits": mc}, k)
        ours_t.append(time.perf_counter() - start)
        torch.manual_seed(rep)
        start = time.perf_counter()
        ranks = BaalBatchBALD(num_samples=k, num_draw=m).get_ranks(probs_baal)[0]
        baal_t.append(time.perf_counter() - start)
        overlaps.append(len(set(ours) & set(np.asarray(ranks[:k]).tolist())) / k)
        print(f"timing repeat {rep}: ours {ours_t[-1]:.3f}s baal {baal_t[-1]:.3f}s overlap {overlaps[-1]}", flush=True)
    return {
        "ours_s": ours_t,
        "baal_s": baal_t,
        "ours_median_s": statistics.median(ours_t),
        "baal_median_s": statistics.median(baal_t),
        "topk_overlap_with_baal": overlaps,
        "pool": len(x),
        "query": k,
        "configurations": m,
        "mc_samples": 20,
        "classes": 10,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="repeated_mnist,cifar10")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed-list", default=None, help="run these seeds only (e.g. 1,2)")
    parser.add_argument("--base", type=int, default=1000, help="MNIST images before the 3x repetition")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--paper-rounds", type=int, default=13, help=f"rounds of the {PAPER} dataset")
    parser.add_argument("--paper-steps", type=int, default=200, help=f"training steps per round ({PAPER})")
    parser.add_argument("--cifar-pool", type=int, default=2000)
    parser.add_argument("--cifar-rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--timing", action="store_true", help="only the timing claim (merged into the results)")
    parser.add_argument(
        "--copies-vs-samples", action="store_true", help="only the one-round copies diagnostic at 20 and 100 MC samples"
    )
    parser.add_argument("--timing-pool", type=int, default=600)
    parser.add_argument("--timing-query", type=int, default=10)
    parser.add_argument("--timing-configurations", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--partial", default=None, help="write the accuracy runs here after each run")
    parser.add_argument("--merge", nargs="*", default=None, help="partial files to merge into the results")
    args = parser.parse_args()
    args.strategies = args.strategies.split(",")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    previous = read_results("active_strategies") if (RESULTS_DIR / "active_strategies.json").exists() else {}
    details: dict[str, Any] = dict(previous.get("details", {}))
    claims = {c["id"]: c for c in previous.get("claims", [])}
    details["threads"] = args.threads
    if args.copies_vs_samples:
        details["copies_vs_samples"] = copies_vs_samples(args)
        if args.partial:
            Path(args.partial).write_text(json.dumps(details["copies_vs_samples"]))
            return
    elif args.timing:
        t = timing(args)
        details["timing"] = t
        claims["batchbald_scoring_speed_vs_baal"] = claim(
            "batchbald_scoring_speed_vs_baal",
            f"BatchBALD selection of {t['query']} from {t['pool']} MNIST pool examples (20 MC samples, 10 classes, "
            f"{t['configurations']} sampled configurations on both sides), ours vs baal "
            f"{_version('baal')}, {args.threads} thread(s), median of {args.repeats}",
            ours=round(t["ours_median_s"], 4),
            anchor=round(t["baal_median_s"], 4),
            better="lower",
            unit="s",
            target=2.0,
        )
    else:
        runs: dict[str, Any] = dict(details.get("accuracy", {}))  # earlier datasets / seeds are kept
        if args.merge is not None:
            for part in args.merge:
                for dataset, per in json.loads(Path(part).read_text()).items():
                    for name, by_seed in per.items():
                        runs.setdefault(dataset, {}).setdefault(name, {}).update(by_seed)
        else:
            for dataset in args.datasets.split(","):
                run_dataset(dataset, args, runs)
        details["accuracy"] = runs
        details["settings"] = dict(details.get("settings", {}))
        details["settings"].update(
            {
                PAPER: f"BatchBALD paper protocol (Kirsch et al. 2019, Repeated MNIST): {args.base} MNIST images x3 "
                f"(+N(0, 0.1) noise), 20 labelled at start (2 per class), acquisition size 10, {args.paper_rounds} "
                f"rounds, consistent MC dropout (20 samples, the same 20 dropout masks for every pool example in a round; "
                f"BatchBALD {KWARGS['batchbald']['max_configurations']} sampled configurations), retrained from "
                f"scratch each round for {args.paper_steps} steps of 32",
                DIAGNOSTIC: f"{PAPER} with MC dropout masks drawn per example (the library before consistent masks; "
                "seeds 0-3 are the runs of the earlier claim)",
                "cifar10": f"{args.cifar_pool} CIFAR-10 images, 40 labelled at start, query 20, {args.cifar_rounds} rounds",
                "model": "SmallCNN(channels=(16, 32), dropout 0.5), retrained from scratch each round, Adam 1e-3, "
                f"{args.steps} steps of 32",
                "strategy_kwargs": KWARGS,
                "cpu": "1 thread per process; the machine's 2 cores were shared by about 8 processes (see load_average)",
            }
        )
        details["plot"] = plot(runs)
        for key in ("repeated_mnist", PAPER, DIAGNOSTIC):
            paired = _paired_final(runs.get(key, {}))
            if paired is not None:
                details[f"final_accuracy_{key}"] = paired
            copied = _copies_summary(runs.get(key, {}))
            if copied:
                details[f"copies_{key}"] = copied
        source = PAPER if f"final_accuracy_{PAPER}" in details else "repeated_mnist"
        paired = details.get(f"final_accuracy_{source}")
        if paired is not None:
            claims["batchbald_vs_bald_acc_repeated_mnist"] = claim(
                "batchbald_vs_bald_acc_repeated_mnist",
                f"Repeated MNIST test accuracy at {paired['labelled']} labelled examples, BatchBALD - BALD "
                f"(query 10, 20 MC samples), mean of {len(paired['seeds'])} paired seeds ({source}; per-seed "
                f"deltas {paired['delta_per_seed']}, std {paired['delta_std']})",
                ours=paired["batchbald"],
                anchor=paired["bald"],
                better="higher",
                unit="% accuracy",
                target_delta=1.0,
                source=source,
            )
    details["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    write_results("active_strategies", list(claims.values()), details)
    for c in claims.values():
        print(c)


def _paired_final(per_strategy: dict[str, Any]) -> dict[str, Any] | None:
    """Final accuracy of BALD and BatchBALD over the seeds both finished, with the per-seed BatchBALD - BALD."""
    if "bald" not in per_strategy or "batchbald" not in per_strategy:
        return None
    seeds = sorted(set(per_strategy["bald"]) & set(per_strategy["batchbald"]), key=int)
    if not seeds:
        return None
    final = {name: [per_strategy[name][s]["curve"][-1]["accuracy"] for s in seeds] for name in ("bald", "batchbald")}
    deltas = [round(b - a, 3) for a, b in zip(final["bald"], final["batchbald"])]
    out: dict[str, Any] = {
        "labelled": per_strategy["bald"][seeds[0]]["curve"][-1]["labelled"],
        "seeds": seeds,
        "bald": round(statistics.mean(final["bald"]), 3),
        "batchbald": round(statistics.mean(final["batchbald"]), 3),
        "bald_per_seed": final["bald"],
        "batchbald_per_seed": final["batchbald"],
        "delta_per_seed": deltas,
        "delta_std": round(statistics.stdev(deltas), 3) if len(deltas) > 1 else None,
    }
    for name in sorted(set(per_strategy) - {"bald", "batchbald"}):
        done = [per_strategy[name][s]["curve"][-1]["accuracy"] for s in seeds if s in per_strategy[name]]
        if done:
            out[f"{name}_mean_over_{len(done)}_seeds"] = round(statistics.mean(done), 3)
    return out


def _copies_summary(per_strategy: dict[str, Any]) -> dict[str, Any]:
    """Per strategy, over the seeds that recorded them: the picks per round that copy an image already picked in
    the same query or already labelled (mean over seeds), and each seed's total over the campaign."""
    out: dict[str, Any] = {}
    for name, by_seed in per_strategy.items():
        recorded = {s: by_seed[s]["copies"] for s in sorted(by_seed, key=int) if "copies" in by_seed[s]}
        if not recorded:
            continue
        per_round = np.array([[c["in_batch"] + c["of_labelled"] for c in rounds] for rounds in recorded.values()])
        out[name] = {
            "seeds": sorted(recorded, key=int),
            "per_round_mean": per_round.mean(0).round(2).tolist(),
            "in_batch_total_per_seed": [sum(c["in_batch"] for c in r) for r in recorded.values()],
            "of_labelled_total_per_seed": [sum(c["of_labelled"] for c in r) for r in recorded.values()],
            "picks_per_seed": int(per_round.shape[1] * 10),
        }
    return out


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
