"""Where each stopping criterion stops, and the accuracy given up against running to the full budget (issue 23).

Reported, no target. Every campaign runs to its full budget with all criteria *measuring* (their ``stop/*``
columns in the learning curve) and none stopping; :func:`~trinity_lightning.rounds.stopping.where_stops` then
replays each criterion on the recorded curve: the round where it would have stopped, the labels spent there and
the accuracy (F1) given up = metric at the full budget - metric where it stopped.

* ``digits``: MNIST (the shared data folder), an MLP, entropy sampling, ``--digits-pool`` training images as
  the pool, 2000 test images as the validation split, ``--digits-query`` per round up to ``--digits-budget``.
  Criteria: low mean uncertainty (least confidence <= 0.05 on 2000 pool images), stabilizing predictions
  (kappa >= 0.99 three rounds running on a 1000-image stop set), ΔF (val accuracy moves < 0.5 points twice
  running), budget (half the full budget).
* ``conll``: CoNLL-2003, the curves stored by ``benchmarks/active_ner.py`` (GPU run, 3 seeds, MNLP / random /
  least confidence / BALD, entity F1 on testb at 1%, 5%, ..., 33% of the words): ΔF (F1 moves < 1 point twice
  running; < 2 points once) and budget (17% of the words) replayed on each seed's curve. The model-measured
  criteria (uncertainty, kappa) need the model: ``--conll-live`` runs a small CPU campaign (``--conll-train``
  sentences, MNLP, 5% of the words per round) with all of them measuring: low uncertainty per token and per
  sentence (``reduce="max"``: the most uncertain word; ``reduce="mnlp"``: the length-normalised sequence
  probability), stabilizing predictions, ΔF on entity F1 and budget; each uncertainty column is also replayed at
  several thresholds (``threshold_sweep``).

Usage: ``python benchmarks/active_stopping.py`` (about 4 minutes on an idle 2-core machine; ``--tiny``: 1 minute);
``--only-conll-live`` runs the live CoNLL campaign alone and merges it into the stored results.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _results import RESULTS_DIR, write_results


def _criteria(monitor: str, delta: float, budget: float, unit: str, uncertainty: float) -> list[Any]:
    from trinity_lightning.rounds.stopping import Budget, DeltaF, LowUncertainty, StabilizingPredictions

    return [
        LowUncertainty(uncertainty, kind="least_confidence", sample=2000),
        StabilizingPredictions(0.99, window=3, size=1000),
        DeltaF(monitor, threshold=delta, window=2),
        Budget(budget, unit=unit),
    ]


def _conll_criteria(total_words: int) -> list[Any]:
    from trinity_lightning.rounds.stopping import LowUncertainty

    return [
        *_criteria("val_f1", 0.01, 0.5 * total_words, "tokens", 0.05),
        LowUncertainty(0.2, kind="least_confidence", sample=2000, reduce="max"),
        LowUncertainty(0.05, kind="least_confidence", sample=2000, reduce="mnlp"),
    ]


SWEEP = {
    "stop/uncertainty": (0.01, 0.02, 0.03, 0.05, 0.1),
    "stop/uncertainty_max": (0.05, 0.1, 0.15, 0.2, 0.3),
    "stop/uncertainty_mnlp": (0.01, 0.02, 0.03, 0.05, 0.1),
}


def _sweep(curve: list[dict[str, Any]], monitor: str, cost: str, scale: float) -> dict[str, Any]:
    """Each recorded uncertainty column replayed at several thresholds: where it stops and what it gives up."""
    from trinity_lightning.rounds.stopping import LowUncertainty

    out: dict[str, Any] = {}
    for column, thresholds in SWEEP.items():
        if not any(column in row for row in curve):
            continue
        reduce = column.rpartition("_")[2] if column != "stop/uncertainty" else "token"
        criteria = [LowUncertainty(t, reduce=reduce) for t in thresholds]
        out[column] = {
            str(t): {k: v for k, v in s.items() if k != "criterion"}
            for t, s in zip(thresholds, _summary(criteria, curve, monitor, cost, scale).values())
        }
    return out


def _summary(criteria: list[Any], curve: list[dict[str, Any]], monitor: str, cost: str, scale: float) -> dict:
    """Per criterion: the stopping row, the labels spent there, the metric there and what is given up."""
    from trinity_lightning.rounds.stopping import where_stops

    final = float(curve[-1][monitor]) * scale
    out: dict[str, Any] = {}
    for criterion, (name, at) in zip(criteria, where_stops(criteria, curve).items()):
        row = curve[at] if at is not None else None
        out[name] = {
            "criterion": repr(criterion),
            "stops_at_round": at,
            "labelled": row[cost] if row is not None else None,
            "metric": round(float(row[monitor]) * scale, 3) if row is not None else None,
            "given_up": round(final - float(row[monitor]) * scale, 3) if row is not None else None,
            "labels_saved": (curve[-1][cost] - row[cost]) if row is not None else 0,
        }
    return out


def _clean(curve: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()} for row in curve]


def run_digits(args: argparse.Namespace) -> dict[str, Any]:
    import lightning.pytorch as pl
    import torch
    from torch import nn

    from _harness import quiet, trainer
    from trinity_lightning.active import ActiveLearning, ActiveLearningDataModule
    from trinity_lightning.data import ArrayDataset, load_mnist
    from trinity_lightning.models import Classifier

    quiet()
    pl.seed_everything(args.seed, verbose=False)

    def arrays(split: str, n: int) -> ArrayDataset:
        data = load_mnist(split)
        x = torch.from_numpy(data.images[:n]).float().reshape(n, -1) / 255.0
        return ArrayDataset((x - 0.1307) / 0.3081, torch.from_numpy(data.labels[:n]).long())

    dm = ActiveLearningDataModule(
        arrays("train", args.digits_pool),
        val=arrays("test", 2000),
        initial_labelled=args.digits_query,
        batch_size=32,
        pool_batch_size=1000,
        num_classes=10,
        seed=args.seed,
    )
    criteria = _criteria("val_acc", 0.005, args.digits_budget / 2, "examples", 0.05)
    al = ActiveLearning(
        "entropy",
        query_size=args.digits_query,
        budget=args.digits_budget,
        epochs_per_round=args.digits_epochs,
        min_steps_per_round=30,
        monitor="val_acc",
        seed=args.seed,
        stopping=[_Never(c) for c in criteria],
        curve_path=str(Path(tempfile.gettempdir()) / "active_stopping_digits.csv"),
    )
    net = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, 10))
    started = time.process_time()
    trainer(max_epochs=-1, callbacks=[al]).fit(Classifier(model=net, num_classes=10, lr=1e-3), datamodule=dm)
    return {
        "pool": args.digits_pool,
        "query": args.digits_query,
        "budget": args.digits_budget,
        "cpu_seconds": round(time.process_time() - started, 1),
        "criteria": _summary(criteria, al.curve, "val_acc", "labelled", 100.0),
        "curve": _clean(al.curve),
    }


class _Never:
    """Measure with ``criterion`` every round but never stop (the campaign runs to the full budget)."""

    def __init__(self, criterion: Any) -> None:
        self.criterion = criterion

    def measure(self, trainer: Any, pl_module: Any, datamodule: Any) -> dict[str, float]:
        measure = getattr(self.criterion, "measure", None)
        return measure(trainer, pl_module, datamodule) if callable(measure) else {}

    def should_stop(self, history: Any) -> bool:
        return False

    def state_dict(self) -> dict[str, Any]:
        return getattr(self.criterion, "state_dict", dict)()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        getattr(self.criterion, "load_state_dict", lambda _: None)(state)


def replay_conll(path: Path) -> dict[str, Any]:
    from trinity_lightning.rounds import AtLeast
    from trinity_lightning.rounds.stopping import DeltaF

    stored = json.loads(path.read_text())
    out: dict[str, Any] = {"source": str(path.relative_to(Path(__file__).resolve().parents[1])), "strategies": {}}
    for strategy, curves in stored["details"]["curves"].items():
        per_seed = {}
        for seed, run in curves["per_seed"].items():
            curve = [{"fraction": f, "val_f1": f1 / 100.0} for f, f1 in zip(run["fraction"], run["f1"])]
            criteria = [
                DeltaF("val_f1", threshold=0.01, window=2),  # F1 moves < 1 point twice running
                DeltaF("val_f1", threshold=0.02, window=1),  # < 2 points once
                AtLeast("fraction", 0.17),  # 17% of the words
            ]
            per_seed[seed] = _summary(criteria, curve, "val_f1", "fraction", 100.0)
        names = next(iter(per_seed.values())).keys()
        out["strategies"][strategy] = {
            "per_seed": per_seed,
            "seeds_stopped": {n: sum(s[n]["stops_at_round"] is not None for s in per_seed.values()) for n in names},
            "means_over": "the seeds where the criterion stops (seeds_stopped of them)",
            "mean_given_up": {
                n: round(
                    float(np.mean([s[n]["given_up"] for s in per_seed.values() if s[n]["given_up"] is not None])), 3
                )
                if any(s[n]["given_up"] is not None for s in per_seed.values())
                else None
                for n in names
            },
            "mean_fraction_at_stop": {
                n: round(
                    float(np.mean([s[n]["labelled"] for s in per_seed.values() if s[n]["labelled"] is not None])), 4
                )
                if any(s[n]["labelled"] is not None for s in per_seed.values())
                else None
                for n in names
            },
        }
    return out


def run_conll_live(args: argparse.Namespace) -> dict[str, Any]:
    import lightning.pytorch as pl

    from _harness import quiet, trainer
    from trinity_lightning.active import ActiveLearning
    from trinity_lightning.active.ner import ConllDataModule
    from trinity_lightning.models.tagger import Tagger

    quiet()
    pl.seed_everything(args.seed, verbose=False)
    dm = ConllDataModule(
        val_path="test", train_limit=args.conll_train, eval_limit=500, batch_size=32, pool_batch_size=256
    )
    dm.setup()
    total = int(dm.costs().sum())
    dm.label_randomly(max(1, len(dm.pool_indices) // 20), seed=args.seed)
    criteria = _conll_criteria(total)
    al = ActiveLearning(
        "mnlp",
        query_size=0.05,
        budget=0.6,
        unit="tokens",
        epochs_per_round=args.conll_epochs,
        min_steps_per_round=30,
        monitor="val_f1",
        seed=args.seed,
        stopping=[_Never(c) for c in criteria],
        curve_path=str(Path(tempfile.gettempdir()) / "active_stopping_conll.csv"),
    )
    started = time.process_time()
    trainer(max_epochs=-1, callbacks=[al], gradient_clip_val=5.0).fit(Tagger(lr=1e-3), datamodule=dm)
    return {
        "train_sentences": args.conll_train,
        "words": total,
        "cpu_seconds": round(time.process_time() - started, 1),
        "criteria": _summary(criteria, al.curve, "val_f1", "labelled_tokens", 100.0),
        "threshold_sweep": _sweep(al.curve, "val_f1", "labelled_tokens", 100.0),
        "curve": _clean(al.curve),
    }


def summarise_conll_curve(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The live CoNLL summary from a curve CSV the campaign wrote (a run stopped early: its last row is the budget)."""
    import csv

    with path.open() as f:
        curve = [
            {k: (float(v) if k not in ("round", "epoch", "step", "labelled") else int(v)) for k, v in row.items()}
            for row in csv.DictReader(f)
        ]
    words = round(curve[-1]["labelled_tokens"] / curve[-1]["fraction"])  # the pool's words: labelled / fraction
    criteria = _conll_criteria(words)
    return {
        "train_sentences": args.conll_train,
        "words": words,
        "from_curve": str(path),
        "criteria": _summary(criteria, curve, "val_f1", "labelled_tokens", 100.0),
        "threshold_sweep": _sweep(curve, "val_f1", "labelled_tokens", 100.0),
        "curve": _clean(curve),
    }


STOP_IMG = Path(__file__).resolve().parents[1] / "docs" / "img" / "active_stopping_conll.png"


def plot_conll_live(live: dict[str, Any], path: Path = STOP_IMG) -> str | None:
    """F1 against the labelled share of the words, a marker where each criterion stops (left), and the measured
    stopping quantities with their thresholds (right)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        return None
    curve = live["curve"]
    words = [row["labelled_tokens"] for row in curve]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    left.plot(words, [100.0 * row["val_f1"] for row in curve], marker="o", ms=3, color="k", label="entity F1")
    for i, (name, summary) in enumerate(live["criteria"].items()):
        if summary["labelled"] is None:
            continue
        short = name.split("(")[0] + ("" if "(" not in name else f" ({name.split('reduce=')[1].split(',')[0]})")
        left.axvline(summary["labelled"], color=f"C{i}", ls="--", alpha=0.8)
        left.plot(  # shrinking markers: criteria that stop at the same round stay visible
            [summary["labelled"]],
            [summary["metric"]],
            "o",
            ms=14 - 2 * i,
            color=f"C{i}",
            label=f"{short} stops at {summary['labelled']:,}",
        )
    left.set_xlabel(f"labelled words (of {live['words']})")
    left.set_ylabel("entity F1 (%)")
    left.set_title(f"CoNLL-2003 live campaign ({live['train_sentences']} sentences, MNLP)")
    left.grid(alpha=0.3)
    left.legend(fontsize=7, loc="lower right")
    for column, label in (
        ("stop/uncertainty", "least confidence per token (stop <= 0.05)"),
        ("stop/uncertainty_max", "max over the sentence (stop <= 0.2)"),
        ("stop/uncertainty_mnlp", "MNLP-normalised (stop <= 0.05)"),
        ("stop/kappa", "kappa between rounds (stop >= 0.99 x3)"),
    ):
        values = [row.get(column) for row in curve]
        if any(v is not None for v in values):
            right.plot(words, [v if v is not None else np.nan for v in values], marker=".", label=label)
    right.set_xlabel("labelled words")
    right.set_title("what the criteria measure")
    right.grid(alpha=0.3)
    right.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path.relative_to(path.parents[2]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--digits-pool", type=int, default=5000)
    parser.add_argument("--digits-query", type=int, default=100)
    parser.add_argument("--digits-budget", type=int, default=2000)
    parser.add_argument("--digits-epochs", type=int, default=1)
    parser.add_argument("--conll-live", action="store_true", help="also run a small CoNLL campaign on CPU")
    parser.add_argument("--conll-train", type=int, default=1500)
    parser.add_argument("--conll-epochs", type=int, default=2, help="epochs per round of the live CoNLL campaign")
    parser.add_argument(
        "--conll-curve", type=Path, default=None, help="with --only-conll-live: summarise this recorded curve CSV"
    )
    parser.add_argument(
        "--only-conll-live", action="store_true", help="only the live CoNLL campaign, merged into the stored results"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tiny", action="store_true", help="a quick check of the script (small pool and budget)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args()
    if args.tiny:
        args.digits_pool, args.digits_query, args.digits_budget, args.conll_train = 1500, 50, 400, 300
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    started = time.time()
    name = "active_stopping_tiny" if args.tiny else "active_stopping"
    if args.only_conll_live:
        previous = args.results_dir / f"{name}.json"
        stored = json.loads(previous.read_text()) if previous.exists() else {}
        details: dict[str, Any] = stored.get("details", {})
        if args.conll_curve is not None:
            details["conll_live"] = summarise_conll_curve(args.conll_curve, args)
        else:
            details["conll_live"] = run_conll_live(args)
        details["conll_live"]["command"] = " ".join(["python benchmarks/active_stopping.py", *sys.argv[1:]])
        details["conll_live"]["plot"] = plot_conll_live(details["conll_live"])
        details["conll_live"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
        print("conll live", json.dumps(details["conll_live"]["criteria"], indent=1), flush=True)
        print(write_results(name, [], details, command=stored.get("command"), results_dir=args.results_dir))
        return
    details = {"digits": run_digits(args)}
    print("digits", json.dumps(details["digits"]["criteria"], indent=1), flush=True)
    ner = Path(__file__).resolve().parent / "results" / "active_ner.json"
    if ner.exists():
        details["conll_stored_curves"] = replay_conll(ner)
        print("conll", json.dumps(details["conll_stored_curves"]["strategies"]["mnlp"]["mean_given_up"]), flush=True)
    if args.conll_live:
        if args.conll_curve is not None:
            details["conll_live"] = summarise_conll_curve(args.conll_curve, args)
        else:
            details["conll_live"] = run_conll_live(args)
        print("conll live", json.dumps(details["conll_live"]["criteria"], indent=1), flush=True)
    details["wall_seconds"] = round(time.time() - started, 1)
    details["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    details["note"] = "reported, no target: where each criterion stops and the metric given up vs the full budget"
    print(write_results(name, [], details, results_dir=args.results_dir))


if __name__ == "__main__":
    main()
