"""Deep active learning for NER (Shen et al., ICLR 2018) on CoNLL-2003 English with our components.

Protocol (the issue's 1-1.5 CPU-hour protocol, run in parallel processes): the CNN-CNN-LSTM tagger
(:class:`trinity_lightning.models.Tagger`, 2.9M parameters, random embeddings), pool = the training split.
Each campaign starts from a random 1% of the training *words*, then queries 4% of the words per round
up to 33% (1, 5, 9, ..., 33%: it lands on 25% and brackets 20%), warm start, ``--epochs`` epochs (at
least ``--min-steps`` steps) per round, entity F1 on the CoNLL test split (testb) after every round.
Strategies random / least confidence / MNLP on the full pool, BALD (10 MC-dropout samples, mutual
information averaged over tokens) on a random 25% of the pool each round; 3 seeds each. The reference
line is the same model trained on 100% of the words for ``--full-epochs`` epochs (its best epoch).

Every job is one ``trainer.fit`` with the :class:`~trinity_lightning.active.ActiveLearning` callback
over a :class:`~trinity_lightning.active.ner.ConllDataModule`: the library's own code path.

Usage::

    python benchmarks/active_ner.py --workers 15 --device cuda      # the full protocol (GPU machine)
    python benchmarks/active_ner.py --tiny                          # a 2-minute CPU check of the script
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _results import claim, write_json, write_results

STRATEGIES = ("random", "least_confidence", "mnlp", "bald")


def _datamodule(args: argparse.Namespace) -> Any:
    from trinity_lightning.active.ner import ConllDataModule

    dm = ConllDataModule(
        val_path="test",
        train_limit=args.train_limit,
        eval_limit=args.eval_limit,
        batch_size=args.batch_size,
        pool_batch_size=512,
    )
    dm.setup()
    return dm


def _seed_set(dm: Any, fraction: float, seed: int) -> list[int]:
    """Random sentences adding up to ``fraction`` of the training words (same for every strategy of a seed)."""
    costs = dm.costs()
    order = np.random.default_rng(seed).permutation(len(costs))
    cum = np.cumsum(costs[order])
    return sorted(order[: max(1, int(np.searchsorted(cum, fraction * costs.sum(), side="right")))].tolist())


def _trainer(args: argparse.Namespace, callbacks: list[Any], max_epochs: int) -> Any:
    from _harness import trainer

    return trainer(
        max_epochs=max_epochs, callbacks=callbacks, accelerator=args.device, devices=1, gradient_clip_val=5.0
    )


def run_campaign(args: argparse.Namespace, strategy: str, seed: int) -> dict[str, Any]:
    """One active-learning campaign; returns its learning curve."""
    import lightning.pytorch as pl
    import torch

    from trinity_lightning.active import ActiveLearning
    from trinity_lightning.models.tagger import Tagger

    torch.set_num_threads(args.threads)
    from _harness import quiet

    quiet()
    pl.seed_everything(seed, verbose=False)
    dm = _datamodule(args)
    dm.label(_seed_set(dm, args.start, seed), advance_round=False)
    total = int(dm.costs().sum())
    kwargs: dict[str, Any] = {}
    if strategy == "bald":
        kwargs = {"pool_subset": args.bald_pool, "strategy_kwargs": {"n_samples": args.mc_samples}}
    al = ActiveLearning(
        strategy,
        query_size=round(args.step * total),
        budget=round(args.stop * total),
        unit="tokens",
        epochs_per_round=args.epochs,
        min_steps_per_round=args.min_steps,
        monitor="val_f1",
        seed=seed,
        curve_path=str(Path(args.work) / f"{strategy}_{seed}.csv"),
        **kwargs,
    )
    started = time.perf_counter()
    _trainer(args, [al], -1).fit(Tagger(lr=args.lr), datamodule=dm)
    rows = al.curve
    return {
        "strategy": strategy,
        "seed": seed,
        "seconds": time.perf_counter() - started,
        "fraction": [r["fraction"] for r in rows],
        "f1": [100 * r.get("val_f1", float("nan")) for r in rows],
        "labelled": [r["labelled"] for r in rows],
        "tokens": [r["labelled_tokens"] for r in rows],
        "query_seconds": [r["query_seconds"] for r in rows],
    }


def run_full(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """The same tagger trained on every training sentence: the reference F1."""
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.callbacks import Callback

    from trinity_lightning.models.tagger import Tagger

    torch.set_num_threads(args.threads)
    from _harness import quiet

    quiet()
    pl.seed_everything(seed, verbose=False)
    dm = _datamodule(args)
    dm.label(dm.pool_indices, advance_round=False)
    curve: list[float] = []

    class Record(Callback):
        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            curve.append(100 * float(trainer.callback_metrics["val_f1"]))

    started = time.perf_counter()
    _trainer(args, [Record()], args.full_epochs).fit(Tagger(lr=args.lr), datamodule=dm)
    return {"strategy": "full", "seed": seed, "seconds": time.perf_counter() - started, "epoch_f1": curve}


def _job(payload: tuple[argparse.Namespace, str, int]) -> dict[str, Any]:
    args, strategy, seed = payload
    result = run_full(args, seed) if strategy == "full" else run_campaign(args, strategy, seed)
    write_json(Path(args.work, f"{strategy}_{seed}.json"), result, indent=None)
    print(f"done {strategy} seed {seed} in {result['seconds']:.0f}s", flush=True)
    return result


def _interp(xs: list[float], ys: list[float], x: float) -> float:
    return float(np.interp(x, xs, ys)) if xs and xs[0] <= x <= xs[-1] else float("nan")


def _first_reach(xs: list[float], ys: list[float], level: float) -> float | None:
    """Smallest fraction where the (linearly interpolated) curve reaches ``level``."""
    for i, (x, y) in enumerate(zip(xs, ys)):
        if y >= level:
            if i == 0:
                return x
            x0, y0 = xs[i - 1], ys[i - 1]
            return x0 + (x - x0) * (level - y0) / (y - y0)
    return None


def summarize(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    full = [r for r in results if r["strategy"] == "full"]
    full_f1 = float(np.mean([max(r["epoch_f1"]) for r in full])) if full else float("nan")
    curves: dict[str, dict[str, Any]] = {}
    grid = [round(args.start + i * args.step, 6) for i in range(round((args.stop - args.start) / args.step) + 1)]
    for strategy in STRATEGIES:
        runs = [r for r in results if r["strategy"] == strategy]
        if not runs:
            continue
        per_seed = [[_interp(r["fraction"], r["f1"], g) for g in grid] for r in runs]
        mean = np.nanmean(np.asarray(per_seed), 0).tolist()
        lengths = [np.diff(r["tokens"]) / np.maximum(np.diff(r["labelled"]), 1) for r in runs]
        curves[strategy] = {
            "grid": grid,
            "mean_f1": mean,
            "per_seed": {str(r["seed"]): {"fraction": r["fraction"], "f1": r["f1"]} for r in runs},
            "f1_at_20pct": _interp(grid, mean, 0.20),
            "fraction_to_99pct_full": _first_reach(grid, mean, 0.99 * full_f1),
            "mean_selected_sentence_length": float(np.mean(np.concatenate(lengths))) if lengths else None,
            "seconds_per_campaign": float(np.mean([r["seconds"] for r in runs])),
            "query_seconds_per_round": float(np.mean([np.mean(r["query_seconds"][1:] or [0]) for r in runs])),
        }
    claims = []
    if "mnlp" in curves and full:
        reach = curves["mnlp"]["fraction_to_99pct_full"]
        ours = reach if reach is not None else args.stop
        claims.append(
            claim(
                "mnlp_words_to_full_f1",
                "fraction of training words at which MNLP (mean of seeds) reaches 99% of the full-data "
                "F1 of the same tagger; anchor = the paper's 25%"
                + ("" if reach is not None else f" (not reached within {args.stop:.0%}: ours = the cap)"),
                ours=round(ours, 4),
                anchor=0.25,
                better="lower",
                unit="fraction of words",
                target=1.0,
                reached=reach is not None,
            )
        )
    if "mnlp" in curves and "random" in curves:
        claims.append(
            claim(
                "mnlp_vs_random_f1_at_20pct",
                "entity F1 (CoNLL-2003 test) at 20% of training words, MNLP - random, mean of seeds",
                ours=round(curves["mnlp"]["f1_at_20pct"], 3),
                anchor=round(curves["random"]["f1_at_20pct"], 3),
                better="higher",
                unit="F1 points",
                target_delta=1.0,
            )
        )
    details = {
        "protocol": {
            k: getattr(args, k)
            for k in (
                "start",
                "step",
                "stop",
                "epochs",
                "min_steps",
                "full_epochs",
                "mc_samples",
                "bald_pool",
                "seeds",
                "batch_size",
                "lr",
                "train_limit",
                "eval_limit",
                "device",
            )
        },
        "reduction": (
            "issue's reduced protocol: 1%..33% of words in 4% steps (paper: 1%..50% in 2% steps), warm "
            "start 3 epochs (>= 100 steps) per round, BALD scores a random 25% of the pool each round; "
            "F1 on CoNLL-2003 test (testb) after each round; no pretrained embeddings"
        ),
        "full_data_f1": full_f1,
        "full_data_reference": "best epoch of the same tagger trained on 100% of the words, mean over seeds",
        "full_runs": [{"seed": r["seed"], "epoch_f1": r["epoch_f1"], "seconds": r["seconds"]} for r in full],
        "curves": curves,
        "plot": "docs/img/active_ner.png",
    }
    write_results("active_ner", claims, details, results_dir=Path(args.results_dir) if args.results_dir else None)
    _plot(curves, full_f1, Path(args.plot))
    for c in claims:
        print(json.dumps(c))


def _plot(curves: dict[str, dict[str, Any]], full_f1: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {"random": "random", "least_confidence": "LC", "mnlp": "MNLP", "bald": "BALD (25% pool)"}
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for strategy, c in curves.items():
        ax.plot(100 * np.asarray(c["grid"]), c["mean_f1"], marker="o", ms=3, label=names[strategy])
    if not math.isnan(full_f1):
        ax.axhline(full_f1, color="k", ls="--", lw=1, label=f"full data ({full_f1:.1f})")
        ax.axhline(0.99 * full_f1, color="gray", ls=":", lw=1, label="99% of full data")
    ax.set_xlabel("% of training words labelled")
    ax.set_ylabel("entity F1, CoNLL-2003 test")
    ax.set_title("Active learning for NER, CNN-CNN-LSTM tagger (mean of seeds)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _snapshot(args: argparse.Namespace) -> None:
    """Summarize the finished jobs into ``--snapshot`` (so a run cut off at a time limit still reports)."""
    if not args.snapshot:
        return
    import tarfile

    out = Path(args.snapshot)
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out / "jobs.tar.gz", "w:gz") as tar:
        for path in sorted(Path(args.work).glob("*.json")) + sorted(Path(args.work).glob("*.csv")):
            tar.add(path, arcname=path.name)
    results = [json.loads(p.read_text()) for p in sorted(Path(args.work).glob("*.json"))]
    snap = argparse.Namespace(**{**vars(args), "results_dir": str(out), "plot": str(out / "active_ner.png")})
    try:
        summarize(snap, results)
    except Exception as err:  # a partial set of jobs may not summarize yet; the tarball still holds them
        print(f"snapshot summary skipped: {err}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--start", type=float, default=0.01)
    parser.add_argument("--step", type=float, default=0.04)
    parser.add_argument("--stop", type=float, default=0.33)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--min-steps", type=int, default=100)
    parser.add_argument("--full-epochs", type=int, default=30)
    parser.add_argument("--full-seeds", type=int, default=1)
    parser.add_argument("--mc-samples", type=int, default=10)
    parser.add_argument("--bald-pool", type=float, default=0.25)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--eval-limit", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", default="/tmp/active_ner")
    parser.add_argument("--results-dir", default=None)
    parser.add_argument("--plot", default=str(Path(__file__).resolve().parents[1] / "docs/img/active_ner.png"))
    parser.add_argument("--snapshot", default=None, help="folder refreshed with a summary after every job")
    parser.add_argument("--summarize-only", action="store_true", help="rebuild the JSON from finished jobs")
    parser.add_argument("--tiny", action="store_true", help="a quick CPU check of the script (not a result)")
    args = parser.parse_args()
    if args.tiny:
        args.train_limit, args.eval_limit, args.seeds, args.full_epochs = 600, 200, 1, 2
        args.epochs, args.min_steps, args.step, args.stop, args.mc_samples = 1, 5, 0.1, 0.21, 3
        args.start = 0.01
    Path(args.work).mkdir(parents=True, exist_ok=True)
    jobs = [(args, "full", s) for s in range(args.full_seeds)]
    jobs += [(args, st, s) for s in range(args.seeds) for st in args.strategies]
    if not args.summarize_only:
        todo = [j for j in jobs if not Path(args.work, f"{j[1]}_{j[2]}.json").exists()]
        started = time.perf_counter()
        if args.workers > 1:
            with mp.get_context("spawn").Pool(min(args.workers, len(todo) or 1)) as pool:
                for _ in pool.imap_unordered(_job, todo):
                    _snapshot(args)
        else:
            for job in todo:
                _job(job)
                _snapshot(args)
        print(f"all jobs in {time.perf_counter() - started:.0f}s", flush=True)
    results = [json.loads(p.read_text()) for p in sorted(Path(args.work).glob("*.json"))]
    summarize(args, results)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
