"""Label once or several times? MBEM vs majority vote vs Dawid-Skene under a fixed annotation budget, fair baselines.

    python benchmarks/crowd_label_once.py                        # --scale cpu: the measured run (below)
    python benchmarks/crowd_label_once.py --scale smoke          # a minute: 1 seed, budget 1,500, 3 epochs
    python benchmarks/crowd_label_once.py --scale paper          # the paper's protocol: CIFAR-10, ResNet-20, 60 epochs

The MBEM paper's simulation (Khetan, Lipton & Anandkumar, ICLR 2018; research.md section 3): 100 simulated
"hammer-spammer" workers (a worker is perfect with probability gamma, otherwise answers almost uniformly at random),
a fixed budget B of labels spent as r = 1, 3 or 5 labels on B / r training images (nested seeded subsets of the
training split), each item's r workers drawn at random. The same network, optimiser and epochs for every method.

Every method gets the same two-stage schedule (the official MBEM code trains every method twice, the second time
on targets derived from its own first model): after 1/3 and 2/3 of the epochs its targets are replaced, through a
round callback on the same schedule, by

* ``mv`` / ``ds``: nothing (majority-vote soft labels / Dawid-Skene posteriors all the way; the old baselines),
* ``mv+st`` / ``ds+st``: the model's own hard predictions on the annotated items (self-training: the
  :class:`SelfTraining` callback below, a CrowdEM subclass so the schedule and prediction path are the same),
* ``mbem-class``: CrowdEM / MBEM posteriors with the class prior (``prior="class"``, the paper),
* ``mbem-none``: CrowdEM / MBEM posteriors with a uniform prior (``prior="none"``, the official code's posterior),
* ``mbem-model``: CrowdEM / MBEM with each item's predicted distribution as its prior (``prior="model"``, ours:
  this one also carries a self-training effect, so it is reported beside the paper's, not as the claim).

The claim ``mbem_vs_mv_single_label`` is the paper's MBEM (``mbem-class``) minus majority vote with the same
self-training stage (``mv+st``) at r = 1, gamma = 0.2. Scales (``--scale``):

* ``smoke``: Fashion-MNIST, budget 1,500, 3 epochs, 1 seed, gamma 0.2 (about a minute on one core).
* ``cpu`` (default, the measured run): Fashion-MNIST, budget 10,000, SmallCNN (16-32 channels), AdamW 3e-3,
  batch 128, 15 epochs, gamma 0.2, seeds 0 1 2; test on a fixed 2,000-image subset of Fashion-MNIST test.
  About 20 min of one core (7 methods x 3 redundancies x 3 seeds = 63 trainings).
* ``paper``: CIFAR-10 (the shared JPEG copy), budget 50,000 (r = 1: every training image once), ResNet-20,
  60 epochs, gamma 0.2 and 0.5, 3 seeds, the full 10,000-image test split: about 60 GPU-minutes or days of CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _results import RESULTS_DIR, claim, write_json, write_results

ROOT = Path(__file__).resolve().parents[1]
PLOT = ROOT / "docs" / "img" / "crowd_label_once.png"
METHODS = ("mv", "mv+st", "ds", "ds+st", "mbem-class", "mbem-none", "mbem-model")
SCALES: dict[str, dict[str, Any]] = {
    "smoke": {"dataset": "fashion_mnist", "budget": 1500, "epochs": 3, "seeds": [0], "gammas": [0.2]},
    "cpu": {"dataset": "fashion_mnist", "budget": 10000, "epochs": 15, "seeds": [0, 1, 2], "gammas": [0.2]},
    "paper": {"dataset": "cifar10", "budget": 50000, "epochs": 60, "seeds": [0, 1, 2], "gammas": [0.2, 0.5]},
}


def _images(dataset: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from trinity_lightning.data import load_cifar10, load_fashion_mnist

    if dataset == "cifar10":
        arrays = load_cifar10(split)
        x = torch.from_numpy(arrays.images).float().div_(255.0).permute(0, 3, 1, 2)
        mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
        std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
        return (x - mean) / std, torch.from_numpy(arrays.labels)
    arrays = load_fashion_mnist(split)
    x = torch.from_numpy(arrays.images).float().div_(255.0).unsqueeze(1)
    return (x - 0.2860) / 0.3530, torch.from_numpy(arrays.labels)


def _self_training_callback(epochs_per_round: int, max_rounds: int) -> Any:
    """The baselines' self-training stage, on CrowdEM's schedule and prediction path: targets := own hard predictions."""
    from trinity_lightning.crowd import CrowdEM

    class SelfTraining(CrowdEM):
        def run_round(self, trainer: Any, pl_module: Any) -> dict[str, float]:
            dm = self._datamodule(trainer)
            predictions = self.predict(trainer, pl_module)
            hard = torch.nn.functional.one_hot(predictions.argmax(1), predictions.shape[1]).float()
            dm.set_targets(hard)
            self.round += 1
            record = {"round": float(self.round)}
            gold = getattr(dm, "gold", None)
            if gold is not None:
                record["label_acc"] = float((hard.argmax(1) == gold).float().mean())
            self.history.append(record)
            return record

    return SelfTraining(epochs_per_round=epochs_per_round, max_rounds=max_rounds, guard=False)


def _recording_crowdem(epochs_per_round: int, max_rounds: int, prior: str) -> Any:
    """CrowdEM that also keeps, per round, the class prior ``q`` MBEM used and the class counts of the model's hard
    predictions it was estimated from (to see whether ``q`` is skewed on balanced data)."""
    from trinity_lightning.crowd import CrowdEM

    class RecordingCrowdEM(CrowdEM):
        rounds: list[dict[str, Any]]

        def run_round(self, trainer: Any, pl_module: Any) -> dict[str, float]:
            record = super().run_round(trainer, pl_module)
            assert self.predictions is not None and self.priors is not None
            counts = torch.bincount(self.predictions.argmax(1), minlength=self.predictions.shape[1])
            self.rounds.append(
                {**record, "q": [round(float(v), 4) for v in self.priors], "predicted_class_counts": counts.tolist()}
            )
            return record

    # guard=False: the paper's MBEM, every round taken (the guard is a user-facing safety net)
    callback = RecordingCrowdEM(epochs_per_round=epochs_per_round, max_rounds=max_rounds, prior=prior, guard=False)  # type: ignore[arg-type]
    callback.rounds = []
    return callback


def train_once(
    method: str,
    x: torch.Tensor,
    annotations: Any,
    test: Any,
    epochs: int,
    seed: int,
    dataset: str,
    gold: torch.Tensor | None = None,
) -> dict[str, Any]:
    import lightning.pytorch as pl

    from _harness import trainer
    from trinity_lightning.crowd import CrowdDataModule
    from trinity_lightning.models import Classifier
    from trinity_lightning.models.resnet import CifarResNet

    pl.seed_everything(seed, verbose=False)
    dm = CrowdDataModule(
        x,
        annotations,
        test=test,
        num_classes=10,
        batch_size=128,
        seed=seed,
        init="dawid_skene" if method.startswith("ds") else "majority_vote",
        soft_targets=True,  # the measured protocol trains on the posteriors themselves
    )
    dm.gold = gold  # the simulation's truth, item order = x's: only for the per-round label accuracy in the history
    if dataset == "cifar10":
        model = Classifier(CifarResNet(3, 10, depth=20, width=16), num_classes=10, lr=3e-3)
    else:
        model = Classifier(num_classes=10, in_channels=1, image_size=28, channels=(16, 32), lr=3e-3)
    per_round = max(1, epochs // 3)
    callbacks: list[Any] = []
    if method.startswith("mbem-"):
        callbacks = [_recording_crowdem(per_round, 2, method.split("-", 1)[1])]
    elif method.endswith("+st"):
        callbacks = [_self_training_callback(per_round, 2)]
    fit = trainer(max_epochs=epochs, callbacks=callbacks)
    fit.fit(model, dm)
    acc = fit.test(model, dm, verbose=False)[0]["test_acc"]
    rounds = [dict(h) for cb in callbacks for h in getattr(cb, "rounds", getattr(cb, "history", []))]
    assert dm.targets is not None
    return {"test_acc": float(acc), "targets": dm.targets.argmax(1), "rounds": rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu", help="preset; the options below override it")
    parser.add_argument("--dataset", choices=["fashion_mnist", "cifar10"], default=None)
    parser.add_argument("--budget", type=int, default=None)
    parser.add_argument("--redundancy", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--gammas", type=float, nargs="+", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--workers", type=int, default=100, help="simulated annotators (crowd workers), not processes")
    parser.add_argument("--test-size", type=int, default=None, help="default: 2,000 (cpu, smoke), all (paper)")
    parser.add_argument(
        "--out", default="crowd_label_once", help="results name (several processes: merge with --reuse)"
    )
    parser.add_argument(
        "--reuse", action="store_true", help="keep the runs already in the results file and only train the missing ones"
    )
    parser.add_argument(
        "--summarize-only",
        action="store_true",
        help="recompute the summary, claim and plot from the runs already in the results file(s) --merge",
    )
    parser.add_argument("--merge", nargs="*", default=[], help="extra partial result files whose runs are added")
    args = parser.parse_args()
    for key, value in SCALES[args.scale].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.test_size is None:
        args.test_size = 10000 if args.scale == "paper" else 2000
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    target = RESULTS_DIR / f"{args.out}.json"
    partial = RESULTS_DIR / f"{args.out}.partial.json"
    runs: list[dict[str, Any]] = []
    for extra in args.merge:
        runs += json.loads(Path(extra).read_text())
    if args.summarize_only:
        if not runs and target.is_file():
            runs = json.loads(target.read_text())["details"]["runs"]
        summarize(runs, args, sum(v["seconds"] for v in runs) / 60)
        return

    from trinity_lightning.crowd import hammer_spammer_confusions, simulate_annotations

    x_train, y_train = _images(args.dataset, "train")
    x_test, y_test = _images(args.dataset, "test")
    keep = np.random.default_rng(1234).permutation(len(y_test))[: args.test_size]
    test = torch.utils.data.TensorDataset(x_test[keep], y_test[keep])
    if args.reuse and partial.is_file():
        runs = json.loads(partial.read_text())
    done = {(v["gamma"], v["seed"], v["r"], v["method"]) for v in runs}
    for gamma in args.gammas:
        for seed in args.seeds:
            order = torch.from_numpy(np.random.default_rng(seed).permutation(len(y_train)))
            conf = hammer_spammer_confusions(args.workers, 10, hammer_fraction=gamma, seed=seed)
            for r in args.redundancy:
                n = min(args.budget // r, len(y_train))
                x, y = x_train[order[:n]], y_train[order[:n]]
                table = simulate_annotations(y, conf, labels_per_item=r, seed=seed * 10 + r)
                for method in args.methods:
                    if (gamma, seed, r, method) in done:
                        continue
                    tick, cpu_tick = time.perf_counter(), time.process_time()
                    out = train_once(method, x, table, test, args.epochs, seed, args.dataset, gold=y)
                    run = {
                        "gamma": gamma,
                        "seed": seed,
                        "r": r,
                        "items": n,
                        "method": method,
                        "test_acc": 100 * out["test_acc"],
                        "label_acc": 100 * float((out["targets"] == y).float().mean()),
                        "seconds": time.perf_counter() - tick,
                        "cpu_seconds": time.process_time() - cpu_tick,
                        "rounds": out["rounds"],
                    }
                    runs.append(run)
                    print(json.dumps(run), flush=True)
                    write_json(partial, runs, indent=1)
    summarize(runs, args, sum(v["seconds"] for v in runs) / 60)


def summarize(runs: list[dict[str, Any]], args: argparse.Namespace, minutes: float) -> None:
    """Means per (gamma, r, method), the claims, whether labelling once wins, the plot; writes the results."""
    gammas = sorted({v["gamma"] for v in runs})
    reds = sorted({v["r"] for v in runs})
    methods = [m for m in METHODS if any(v["method"] == m for v in runs)]
    seeds = sorted({v["seed"] for v in runs})

    def values(gamma: float, r: int, method: str, key: str = "test_acc") -> list[float]:
        return [v[key] for v in runs if v["gamma"] == gamma and v["r"] == r and v["method"] == method]

    def mean(gamma: float, r: int, method: str, key: str = "test_acc") -> float:
        got = values(gamma, r, method, key)
        return statistics.mean(got) if got else float("nan")

    summary = {
        f"gamma={g}": {
            f"r={r}": {m: {"test_acc": mean(g, r, m), "label_acc": mean(g, r, m, "label_acc")} for m in methods}
            for r in reds
        }
        for g in gammas
    }
    g0 = 0.2 if 0.2 in gammas else gammas[0]
    r1 = min(reds)
    combos = {f"{m}@r={r}": mean(g0, r, m) for m in methods for r in reds if values(g0, r, m)}
    best = max(combos, key=lambda k: combos[k])
    mbem_by_r = {
        m: {r: mean(g0, r, m) for r in reds if values(g0, r, m)}
        for m in ("mbem-class", "mbem-none", "mbem-model")
        if m in methods
    }
    once_beats_redundant = {m: all(by[r1] >= v for v in by.values()) for m, by in mbem_by_r.items() if len(by) > 1}

    def paired(method: str, anchor: str) -> dict[str, Any]:
        deltas = [
            a["test_acc"] - b["test_acc"]
            for a in runs
            for b in runs
            if a["method"] == method and b["method"] == anchor and a["gamma"] == b["gamma"] == g0
            if a["r"] == b["r"] == r1 and a["seed"] == b["seed"]
        ]
        return {"per_seed": deltas, "min": min(deltas, default=float("nan")), "max": max(deltas, default=float("nan"))}

    setting = (
        f"{args.dataset} test accuracy (points), one label per item, budget {args.budget:,} labels, "
        f"{args.workers} hammer-spammer workers (gamma={g0}), same network, epochs and two-stage schedule, "
        f"mean of {len(seeds)} seeds"
    )
    claims = [
        claim(
            "mbem_vs_mv_single_label",
            f"{setting}: MBEM as in the paper (CrowdEM, prior='class') minus majority vote + self-training "
            "(its own hard predictions as targets at the same two rounds)",
            ours=mean(g0, r1, "mbem-class"),
            anchor=mean(g0, r1, "mv+st"),
            better="higher",
            unit="points",
            target_delta=3.0,
        ),
        claim(
            "mbem_none_vs_mv_st_single_label",
            f"{setting}: MBEM with the official code's uniform prior (prior='none') minus majority vote + self-training",
            ours=mean(g0, r1, "mbem-none"),
            anchor=mean(g0, r1, "mv+st"),
            better="higher",
            unit="points",
            target_delta=3.0,
        ),
        claim(
            "mbem_model_prior_vs_mv_st_single_label",
            f"{setting}: CrowdEM's default prior='model' (ours, not the paper's) minus majority vote + self-training",
            ours=mean(g0, r1, "mbem-model"),
            anchor=mean(g0, r1, "mv+st"),
            better="higher",
            unit="points",
            target_delta=3.0,
        ),
    ]
    details = {
        "summary": summary,
        "paired_deltas_at_r1": {
            f"{m} - {a}": paired(m, a)
            for m in ("mbem-class", "mbem-none", "mbem-model")
            for a in ("mv", "mv+st", "ds", "ds+st")
            if m in methods and a in methods
        },
        "best_overall": best,
        "label_once_wins": best.endswith(f"@r={r1}") and best.startswith("mbem"),
        "test_acc_by_method_and_r": combos,
        "mbem_test_acc_by_r": mbem_by_r,
        "mbem_once_beats_mbem_redundant": once_beats_redundant,
        "seeds": seeds,
        "mbem_rounds_at_r1": _rounds(runs, g0, r1),
        "runs": runs,
        "plot": str(PLOT.relative_to(ROOT)),
        "args": vars(args),
        "minutes": minutes,
        "cpu_minutes": sum(v.get("cpu_seconds", v["seconds"]) for v in runs) / 60,
        "threads_per_process": 1,
        "protocol": __doc__.strip(),
    }
    print(write_results(args.out, claims, details, command=_command(args)))
    for c in claims:
        print(c["id"], round(c["delta"], 2))
    print(best)
    _plot(runs, gammas, reds, methods, args)


def _rounds(runs: list[dict[str, Any]], gamma: float, r: int) -> dict[str, Any]:
    """Per MBEM variant and seed, each round's class prior ``q`` (as MBEM used it), its largest / smallest entry,
    the class counts of the hard predictions it came from and the posteriors' label accuracy: the measurements
    behind the docs' account of why the paper's class prior loses on balanced Fashion-MNIST."""
    out: dict[str, Any] = {}
    for v in runs:
        if v["gamma"] != gamma or v["r"] != r or not v["method"].startswith("mbem-") or not v.get("rounds"):
            continue
        out.setdefault(v["method"], {})[f"seed={v['seed']}"] = [
            {
                "round": int(h["round"]),
                "label_acc": 100 * h["label_acc"] if "label_acc" in h else None,
                "q": h["q"],
                "q_max_over_uniform": max(h["q"]) * len(h["q"]),
                "q_min_over_uniform": min(h["q"]) * len(h["q"]),
                "predicted_class_counts": h["predicted_class_counts"],
            }
            for h in v["rounds"]
        ]
    return out


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces these runs (the options that differ from the scale's preset)."""
    parts = ["python benchmarks/crowd_label_once.py"]
    if args.scale != "cpu":
        parts.append(f"--scale {args.scale}")
    defaults = SCALES[args.scale] | {"redundancy": [1, 3, 5], "methods": list(METHODS)}
    for key, default in defaults.items():
        value = getattr(args, key)
        if value != default:
            shown = " ".join(map(str, value)) if isinstance(value, list) else str(value)
            parts.append(f"--{key.replace('_', '-')} {shown}")
    return " ".join(parts)


def _plot(
    runs: list[dict[str, Any]], gammas: list[float], reds: list[int], methods: list[str], args: argparse.Namespace
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(gammas), figsize=(6 * len(gammas), 4.2), squeeze=False)
    for ax, gamma in zip(axes[0], gammas):
        for method in methods:
            values = [
                [v["test_acc"] for v in runs if v["gamma"] == gamma and v["r"] == r and v["method"] == method]
                for r in reds
            ]
            if not all(values):
                continue
            means = [statistics.mean(v) for v in values]
            ax.errorbar(
                reds,
                means,
                yerr=[[m - min(v) for m, v in zip(means, values)], [max(v) - m for m, v in zip(means, values)]],
                marker="o",
                capsize=3,
                label=method,
                linestyle="--" if method in ("mv", "ds") else "-",
            )
        ax.set_xticks(reds, [f"r={r}\n{args.budget // r:,} items" for r in reds])
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{args.dataset}, budget {args.budget:,} labels, gamma={gamma}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=120)


if __name__ == "__main__":
    main()
