"""Deep active learning for NER (Shen et al., ICLR 2018) on CoNLL-2003 English, under the paper's protocol.

Protocol (issue 20, item 2): the CNN-CNN-LSTM tagger (:class:`trinity_lightning.models.Tagger`, random
embeddings), pool = the training split. Each campaign starts from a random 1% of the training *words*, then
queries ``--step`` of the words per round (warm start: the model keeps training, as in the paper) up to
``--stop`` (61%). **One budget rule for every point** (each round of every strategy, and the full-data
reference): train until the dev F1 (testa) has not improved for ``--patience`` epochs, at least ``--min-steps``
optimizer steps, at most ``--max-epochs`` epochs (:func:`patience_due`). **Epochs are chosen on dev**: the
weights of the point's best dev epoch are kept and scored on test (testb) once, when the point ends; test never
chooses anything. The full-data reference is the same tagger trained from scratch on 100% of the words under
the same rule. ``--patience 0`` restores the earlier fixed rule (``--epochs`` per round, ``--full-epochs`` for
the reference). Crossing points (the words at which a curve reaches 99% of the full-data F1) are interpolated
linearly per seed; the spread over seeds is reported.

``--scale S`` keeps the first ``S`` of the training sentences as the pool and the first ``S`` of dev and test
(``--scale 1`` = the paper's data: 14,041 / 3,250 / 3,453 sentences). ``--train-limit``, ``--eval-limit`` (dev,
which chooses epochs) and ``--test-limit`` (test, read once per point) set each split on its own; a split without
a limit is whole (``--test-limit`` unset = all 3,453 test sentences).

Every job is one ``trainer.fit`` with the :class:`~trinity_lightning.active.ActiveLearning` callback
over a :class:`~trinity_lightning.active.ner.ConllDataModule`: the library's own code path.

Usage::

    python benchmarks/active_ner.py --scale 1 --step 0.02 --workers 6 --device gpu   # the full protocol
    # a CPU run: the first 2,000 training sentences, the first 500 dev sentences choose epochs, all of test:
    python benchmarks/active_ner.py --train-limit 2000 --eval-limit 500 --step 0.15 --min-steps 30 --workers 1
    # the stop-18 run (500 test sentences: too few to place a crossing):
    python benchmarks/active_ner.py --train-limit 1000 --eval-limit 500 --test-limit 500 --step 0.15 --min-steps 30
    python benchmarks/active_ner.py --tiny                                           # a quick check
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _results import claim, write_json, write_results

STRATEGIES = ("random", "least_confidence", "mnlp", "bald")
FULL_POOL, FULL_EVAL = 14041, 3453  # CoNLL-2003 train sentences; the larger of dev (3,250) and test


def _limits(args: argparse.Namespace) -> tuple[int | None, int | None, int | None]:
    """``(train_limit, dev_limit, test_limit)`` in sentences (``None`` = the whole split): ``--train-limit``,
    ``--eval-limit`` (dev) and ``--test-limit`` when given, else from ``--scale`` (``--scale 1``: everything).

    Example:
        >>> from types import SimpleNamespace as NS
        >>> _limits(NS(scale=1.0, train_limit=2000, eval_limit=500, test_limit=None))
        (2000, 500, None)
    """
    scaled = args.scale < 1

    def pick(given: int | None, full: int) -> int | None:
        return given if given is not None else (round(args.scale * full) if scaled else None)

    return pick(args.train_limit, FULL_POOL), pick(args.eval_limit, FULL_EVAL), pick(args.test_limit, FULL_EVAL)


def _datamodule(args: argparse.Namespace) -> Any:
    """Pool = train split, validation = dev (testa: chooses epochs), test = testb (reported)."""
    from trinity_lightning.active.ner import ConllDataModule

    train_limit, dev_limit, test_limit = _limits(args)
    dm = ConllDataModule(
        val_path="dev",
        test_path="test",
        train_limit=train_limit,
        val_limit=dev_limit,
        test_limit=test_limit,
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


def _dev_test_recorder(dm: Any) -> Any:
    """A callback that, after every validation (dev), notes ``(labelled words, epoch, dev F1)`` and keeps a copy of
    the weights of the best dev epoch of the labelled set in use; when that point ends (the labelled set grows, or
    the fit ends) it scores those weights on test once (test never chooses anything)."""
    import torch
    from lightning.pytorch.callbacks import Callback

    from trinity_lightning.models.tagger import EntityF1

    class DevTest(Callback):
        def __init__(self) -> None:
            self.rows: list[dict[str, Any]] = []
            self.best_state: dict[str, Any] | None = None
            self.best_row: dict[str, Any] | None = None

        def _test_f1(self, pl_module: Any) -> float:
            metric = EntityF1(dm.tag_names)
            was_training = pl_module.training
            pl_module.eval()
            with torch.no_grad():
                for batch in dm.test_dataloader():
                    batch = {k: v.to(pl_module.device) for k, v in batch.items()}
                    metric.update(pl_module(batch).argmax(-1).cpu(), batch["tags"].cpu(), batch["mask"].cpu())
            pl_module.train(was_training)
            return 100 * float(metric.compute())

        def _score_best(self, pl_module: Any) -> None:
            """Test F1 of the kept best-dev weights of the point that just ended; the current weights restored."""
            if self.best_row is None or self.best_state is None:
                return
            current = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
            pl_module.load_state_dict(self.best_state)
            self.best_row["test_f1"] = self._test_f1(pl_module)
            pl_module.load_state_dict(current)
            self.best_row, self.best_state = None, None

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            words = int(dm.labelled_cost)
            if self.best_row is not None and self.best_row["words"] != words:
                self._score_best(pl_module)  # the previous point ended: its test F1, read once
            dev = 100 * float(trainer.callback_metrics["val_f1"])
            row = {
                "words": words,
                "epoch": trainer.current_epoch,
                "dev_f1": dev,
                "test_f1": None,
                "cpu_seconds": round(time.process_time(), 2),
            }
            if self.best_row is None or dev > self.best_row["dev_f1"]:
                self.best_row = row
                self.best_state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
            self.rows.append(row)

        def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
            self._score_best(pl_module)

    return DevTest()


def patience_due(dev: list[float], steps: int, patience: int, max_epochs: int, min_steps: int) -> bool:
    """The budget rule of every point (an active-learning round, or the full-data reference): stop when
    ``steps >= min_steps`` and either the dev F1 has not improved for ``patience`` epochs (strictly better than the
    best so far; ``dev`` lists this point's epochs in order) or ``max_epochs`` epochs ran.

    Example:
        >>> patience_due([50.0, 60.0, 59.0, 60.0], steps=99, patience=2, max_epochs=30, min_steps=50)
        True
        >>> patience_due([50.0, 60.0, 59.0], steps=99, patience=2, max_epochs=30, min_steps=50)
        False
        >>> patience_due([50.0, 60.0, 59.0, 58.0], steps=40, patience=2, max_epochs=30, min_steps=50)
        False
    """
    if steps < min_steps or not dev:
        return False
    if len(dev) >= max_epochs:
        return True
    return len(dev) - 1 - int(np.argmax(dev)) >= patience


class DevPatience:
    """:func:`patience_due` over the dev F1 the recorder (:func:`_dev_test_recorder`) noted for the labelled set
    now in use; ``due(epochs, steps)`` is the interface of the round engine's ``Schedule``, so it replaces
    ``ActiveLearning.schedule`` (a round ends when it is due) and, through :meth:`callback`, stops the full-data
    run at the same point: one rule for both sides.

    Example:
        >>> class R: rows = [{"words": 5, "dev_f1": 1.0}, {"words": 9, "dev_f1": 3.0}, {"words": 9, "dev_f1": 2.0}]
        >>> DevPatience(R(), patience=1, max_epochs=10, min_steps=0).due(epochs=2, steps=10)
        True
    """

    def __init__(self, recorder: Any, patience: int, max_epochs: int, min_steps: int) -> None:
        if patience < 1 or max_epochs < 1 or min_steps < 0:
            raise ValueError(
                f"patience / max_epochs / min_steps: expected >= 1, >= 1, >= 0, got {patience}, {max_epochs}, "
                f"{min_steps}"
            )
        self.recorder, self.patience, self.max_epochs, self.min_steps = recorder, patience, max_epochs, min_steps

    def due(self, epochs: int, steps: int) -> bool:
        rows = self.recorder.rows
        if not rows:
            return False
        words = rows[-1]["words"]
        dev = [r["dev_f1"] for r in rows if r["words"] == words]
        return patience_due(dev, steps, self.patience, self.max_epochs, self.min_steps)

    def callback(self) -> Any:
        """A callback that stops ``trainer.fit`` when the rule is due (for the full-data reference)."""
        from lightning.pytorch.callbacks import Callback

        rule = self

        class StopWhenDue(Callback):
            def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
                if rule.due(trainer.current_epoch + 1, trainer.global_step):
                    trainer.should_stop = True

        return StopWhenDue()


def _rule(args: argparse.Namespace, record: Any) -> DevPatience | None:
    """The dev-patience rule of ``--patience``/``--max-epochs``/``--min-steps``; ``None`` for the fixed rule
    (``--patience 0``: ``--epochs`` per round, ``--full-epochs`` for the reference)."""
    return DevPatience(record, args.patience, args.max_epochs, args.min_steps) if args.patience else None


def _selected(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per labelled set (round), the row of the best dev epoch (first one on ties): test F1 read there."""
    out: dict[int, dict[str, Any]] = {}
    for r in rows:
        if r["words"] not in out or r["dev_f1"] > out[r["words"]]["dev_f1"]:
            out[r["words"]] = r
    return [out[w] for w in sorted(out)]


def run_campaign(args: argparse.Namespace, strategy: str, seed: int) -> dict[str, Any]:
    """One active-learning campaign; returns its learning curve (test F1 at each round's best dev epoch)."""
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
    record = _dev_test_recorder(dm)
    rule = _rule(args, record)
    if rule is not None:
        al.schedule = rule  # type: ignore[assignment]  # a round ends when the dev-patience rule is due
    started, cpu = time.perf_counter(), time.process_time()
    _trainer(args, [al, record], -1).fit(Tagger(lr=args.lr), datamodule=dm)
    chosen = _selected(record.rows)
    epochs_per_point = [sum(1 for r in record.rows if r["words"] == c["words"]) for c in chosen]
    rows = al.curve
    return {
        "strategy": strategy,
        "seed": seed,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
        "total_words": total,
        "fraction": [r["words"] / total for r in chosen],
        "f1": [r["test_f1"] for r in chosen],
        "dev_f1": [r["dev_f1"] for r in chosen],
        "chosen_epoch": [r["epoch"] for r in chosen],
        "epochs_per_point": epochs_per_point,
        "steps": int(al.curve[-1]["step"]) if al.curve else None,
        "epochs": record.rows,
        "labelled": [r["labelled"] for r in rows],
        "tokens": [r["labelled_tokens"] for r in rows],
        "query_seconds": [r["query_seconds"] for r in rows],
    }


def run_full(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """The same tagger trained on every training sentence: the reference F1 (test at the best dev epoch)."""
    import lightning.pytorch as pl
    import torch

    from trinity_lightning.models.tagger import Tagger

    torch.set_num_threads(args.threads)
    from _harness import quiet

    quiet()
    pl.seed_everything(seed, verbose=False)
    dm = _datamodule(args)
    dm.label(dm.pool_indices, advance_round=False)
    record = _dev_test_recorder(dm)
    rule = _rule(args, record)
    callbacks = [record] if rule is None else [record, rule.callback()]
    started, cpu = time.perf_counter(), time.process_time()
    trainer = _trainer(args, callbacks, args.full_epochs if rule is None else args.max_epochs)
    trainer.fit(Tagger(lr=args.lr), datamodule=dm)
    best = _selected(record.rows)[0]
    return {
        "strategy": "full",
        "seed": seed,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
        "epoch_dev_f1": [r["dev_f1"] for r in record.rows],
        "best_dev_epoch": best["epoch"],
        "epochs_run": len(record.rows),
        "steps": int(trainer.global_step),
        "test_f1": best["test_f1"],
    }


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


def _spread(values: list[float | None], cap: float) -> dict[str, Any]:
    """Mean / min / max / std of per-seed crossing points; a seed that never crosses counts as ``> cap``."""
    reached = [v for v in values if v is not None]
    return {
        "per_seed": values,
        "seeds_reached": len(reached),
        "mean": float(np.mean(reached)) if len(reached) == len(values) and values else None,
        "min": float(min(reached)) if reached else None,
        "max": float(max(reached)) if len(reached) == len(values) and values else None,
        "std": float(np.std(reached)) if len(reached) == len(values) and len(values) > 1 else None,
        "not_reached_within": cap if len(reached) < len(values) else None,
    }


def extension_crossings(
    results: list[dict[str, Any]], extension: list[dict[str, Any]], level: float, stop: float
) -> dict[str, dict[str, Any]]:
    """Per strategy, the crossings of ``level`` in ``extension``: the same protocol's campaigns run on past ``stop``
    (``--extension DIR``, a job folder of the same command with a later ``--stop``), checked against ``results``.

    A strategy is taken only when the extension holds every seed the main run has, and each seed's test F1 equals
    the main run's at every round before ``stop`` (the last round before the stop may differ: there the main run's
    query was cut to the stop's budget); anything else is not the same protocol and stops the summary.

    Example:
        >>> main = [{"strategy": "random", "seed": 0, "fraction": [0.01, 0.3, 0.6], "f1": [1.0, 40.0, 55.0]}]
        >>> ext = [{"strategy": "random", "seed": 0, "fraction": [0.01, 0.3, 0.61, 0.9], "f1": [1.0, 40.0, 56, 62]}]
        >>> extension_crossings(main, ext, 59.0, 0.61)["random"]["fraction_to_99pct_full_per_seed"]["mean"]
        0.755
    """
    out: dict[str, dict[str, Any]] = {}
    for strategy in STRATEGIES:
        runs = {r["seed"]: r for r in extension if r["strategy"] == strategy}
        mine = {r["seed"]: r for r in results if r["strategy"] == strategy}
        if not runs or not mine:
            continue
        missing = sorted(set(mine) - set(runs))
        if missing:
            raise SystemExit(f"--extension: {strategy} has no seed {missing} there; it must hold the main run's seeds")
        for seed, r in mine.items():
            ext = runs[seed]
            shared = [i for i, f in enumerate(r["fraction"][:-1]) if f < stop]
            same = all(
                i < len(ext["f1"])
                and abs(ext["f1"][i] - r["f1"][i]) < 1e-9
                and abs(ext["fraction"][i] - r["fraction"][i]) < 1e-9
                for i in shared
            )
            if not same:
                raise SystemExit(
                    f"--extension: {strategy} seed {seed} differs from the main run before its last round: not the "
                    "same protocol (pool, dev, test, rule and seed must match)"
                )
        seeds = sorted(mine)
        reach = max(max(runs[s]["fraction"]) for s in seeds)
        crossings = [_first_reach(runs[s]["fraction"], runs[s]["f1"], level) for s in seeds]
        out[strategy] = {
            "seeds": seeds,
            "stop": round(reach, 4),
            "per_seed": {
                str(s): {
                    "fraction": runs[s]["fraction"],
                    "test_f1": runs[s]["f1"],
                    "epochs_per_point": runs[s].get("epochs_per_point"),
                }
                for s in seeds
            },
            "fraction_to_99pct_full_per_seed": _spread(crossings, reach),
            "cpu_seconds_per_campaign": float(
                np.mean([runs[s].get("cpu_seconds", runs[s].get("seconds", np.nan)) for s in seeds])
            ),
        }
    return out


def summarize(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    full = [r for r in results if r["strategy"] == "full"]
    full_f1 = float(np.mean([r["test_f1"] for r in full])) if full else float("nan")
    level = 0.99 * full_f1
    curves: dict[str, dict[str, Any]] = {}
    n_rounds = round((args.stop - args.start) / args.step) + 1
    grid = [round(args.start + i * args.step, 6) for i in range(n_rounds)]
    for strategy in STRATEGIES:
        runs = [r for r in results if r["strategy"] == strategy]
        if not runs:
            continue
        per_seed = [[_interp(r["fraction"], r["f1"], g) for g in grid] for r in runs]
        mean = np.nanmean(np.asarray(per_seed), 0).tolist()
        std = np.nanstd(np.asarray(per_seed), 0).tolist()
        lengths = [np.diff(r["tokens"]) / np.maximum(np.diff(r["labelled"]), 1) for r in runs]
        crossings = [_first_reach(r["fraction"], r["f1"], level) for r in runs]
        curves[strategy] = {
            "grid": grid,
            "mean_f1": mean,
            "std_f1": std,
            "per_seed": {
                str(r["seed"]): {
                    "fraction": r["fraction"],
                    "f1": r["f1"],  # the name the earlier results used (read by benchmarks/active_stopping.py)
                    "test_f1": r["f1"],
                    "dev_f1": r["dev_f1"],
                    "chosen_epoch": r["chosen_epoch"],
                    "epochs_per_point": r.get("epochs_per_point"),
                    "steps": r.get("steps"),
                }
                for r in runs
            },
            "f1_at_20pct": _interp(grid, mean, 0.20),
            "f1_at_20pct_per_seed": [_interp(r["fraction"], r["f1"], 0.20) for r in runs],
            "fraction_to_99pct_full_per_seed": _spread(crossings, args.stop),
            "fraction_to_99pct_full_of_mean_curve": _first_reach(grid, mean, level),
            "mean_selected_sentence_length": float(np.mean(np.concatenate(lengths))) if lengths else None,
            "seconds_per_campaign": float(np.mean([r["seconds"] for r in runs])),
            "cpu_seconds_per_campaign": float(np.mean([r.get("cpu_seconds", r["seconds"]) for r in runs])),
            "query_seconds_per_round": float(np.mean([np.mean(r["query_seconds"][1:] or [0]) for r in runs])),
            "seeds": [r["seed"] for r in runs],
        }
    claims = []
    extended: dict[str, dict[str, Any]] = {}
    if getattr(args, "extension", None) and full:
        extended = extension_crossings(results, job_results(Path(args.extension)), level, args.stop)

    def crossing(strategy: str) -> tuple[float, bool]:
        """Mean over seeds of the per-seed crossing point; the cap when a seed never crosses within the stop, unless
        the ``--extension`` run of the same protocol places it further on."""
        spread = curves[strategy]["fraction_to_99pct_full_per_seed"]
        if spread["mean"] is not None:
            return spread["mean"], True
        more = extended.get(strategy, {}).get("fraction_to_99pct_full_per_seed", {})
        if more.get("mean") is not None:
            return more["mean"], True
        return args.stop, False

    def source(strategy: str) -> str:
        """Where a crossing claim reads ``strategy``'s crossing from, for the claim text."""
        if curves[strategy]["fraction_to_99pct_full_per_seed"]["mean"] is not None or strategy not in extended:
            return ""
        return (
            f"; {strategy}'s crossings come from the same campaigns run on to {extended[strategy]['stop']:.0%} "
            "(--extension; it never crossed within the stop)"
        )

    if "mnlp" in curves and full:
        ours, reached = crossing("mnlp")
        claims.append(
            claim(
                "mnlp_words_to_full_f1",
                "fraction of training words at which MNLP reaches 99% of the full-data F1 of the same tagger "
                "(test F1 at the dev-chosen epoch, per-seed crossing interpolated, mean of seeds); "
                "ratio = the paper's 25% / ours, so ratio >= 0.5 <=> 99% of full F1 with <= 50% of the words"
                + ("" if reached else f" (a seed did not reach it within {args.stop:.0%}: ours = the cap)")
                + source("mnlp"),
                ours=round(ours, 4),
                anchor=0.25,
                better="lower",
                unit="fraction of words",
                target=0.5,
                reached=reached,
                seeds=curves["mnlp"]["seeds"],
                # a crossing beyond the stop makes the ratio an upper bound: never "met" on a cap
                **({} if reached else {"met": False}),
                scaled=_limits(args)[0] is not None,
            )
        )
    if "mnlp" in curves and "random" in curves and full:
        ours, reached_m = crossing("mnlp")
        anchor, reached_r = crossing("random")
        claims.append(
            claim(
                "mnlp_vs_random_words_to_99pct_full_f1",
                "words random needs to reach 99% of the full-data F1 / words MNLP needs (per-seed crossings, "
                "mean of seeds)"
                + (
                    ""
                    if reached_r
                    else f"; random did not reach it within {args.stop:.0%} in every seed: "
                    "anchor = the cap, the ratio is a lower bound"
                )
                + ("" if reached_m else f"; MNLP did not reach it within {args.stop:.0%}: ours = the cap")
                + source("random")
                + source("mnlp"),
                ours=round(ours, 4),
                anchor=round(anchor, 4),
                better="lower",
                unit="fraction of words",
                target=1.4,
                mnlp_reached=reached_m,
                random_reached=reached_r,
                # MNLP capped: the ratio is an upper bound, never "met" (random capped: a lower bound, it may be)
                **({} if reached_m else {"met": False}),
                seeds={"mnlp": curves["mnlp"]["seeds"], "random": curves["random"]["seeds"]},
                scaled=_limits(args)[0] is not None,
            )
        )
    if "mnlp" in curves and "random" in curves:
        claims.append(
            claim(
                "mnlp_vs_random_f1_at_20pct",
                "entity F1 (CoNLL-2003 test at the dev-chosen epoch) at 20% of training words, MNLP - random, "
                "mean of seeds",
                ours=round(curves["mnlp"]["f1_at_20pct"], 3),
                anchor=round(curves["random"]["f1_at_20pct"], 3),
                better="higher",
                unit="F1 points",
                target_delta=1.0,
                seeds={"mnlp": curves["mnlp"]["seeds"], "random": curves["random"]["seeds"]},
            )
        )
    train_limit, dev_limit, test_limit = _limits(args)
    cpu = sum(r.get("cpu_seconds", r["seconds"]) for r in results)
    details = {
        "protocol": {
            k: getattr(args, k)
            for k in (
                "scale",
                "train_limit",
                "eval_limit",
                "test_limit",
                "start",
                "step",
                "stop",
                "epochs",
                "min_steps",
                "patience",
                "max_epochs",
                "full_epochs",
                "mc_samples",
                "bald_pool",
                "seeds",
                "full_seeds",
                "batch_size",
                "lr",
                "device",
                "threads",
            )
        },
        "pool_sentences": train_limit or FULL_POOL,
        "dev_sentences": dev_limit or "all (3,250)",
        "test_sentences": test_limit or "all (3,453)",
        "pool_words": next((r["total_words"] for r in results if "total_words" in r), None),
        "selection": (
            "every epoch is scored on dev (testa); each round's point (and the full-data reference) is the test "
            "(testb) F1 of the best dev epoch of that round; test never chooses anything"
        ),
        "budget_rule": (
            f"every point trains until its dev F1 has not improved for {args.patience} epochs (at least "
            f"{args.min_steps} optimizer steps, at most {args.max_epochs} epochs): each active-learning round warm "
            "(the model keeps training, as in the paper), the full-data reference from scratch; the same rule for "
            "the reference and every strategy"
            if args.patience
            else f"fixed: {args.epochs} warm-start epochs per round (at least {args.min_steps} steps), the reference "
            f"{args.full_epochs} epochs from scratch"
        ),
        "scaled": (
            f"scaled run: the pool is the first {train_limit or 14041} of 14,041 training sentences, dev (epoch "
            f"choice) {f'the first {dev_limit} of 3,250' if dev_limit else 'all 3,250'}, test (read once per point) "
            f"{f'the first {test_limit} of 3,453' if test_limit else 'all 3,453'}; the full protocol is --scale 1"
            if args.scale < 1 or train_limit is not None or dev_limit is not None or test_limit is not None
            else "the full protocol (all of CoNLL-2003)"
        ),
        "full_data_f1": full_f1,
        "level_99pct": level,
        "full_data_reference": "test F1 at the best dev epoch of the same tagger trained on 100% of the pool, mean over seeds",
        "full_runs": [
            {
                "seed": r["seed"],
                "test_f1": r["test_f1"],
                "best_dev_epoch": r["best_dev_epoch"],
                "epochs_run": r.get("epochs_run"),
                "steps": r.get("steps"),
                "epoch_dev_f1": r["epoch_dev_f1"],
                "seconds": r["seconds"],
            }
            for r in full
        ],
        "curves": curves,
        **(
            {
                "extension": {
                    "what": "the same protocol's campaigns run on past the stop (--extension), for crossings the "
                    "stop cuts off; checked equal to the main run on every shared round before the stop",
                    "folder": _relative(Path(args.extension)),
                    "command": re.sub(r"--(stop|full-seeds|strategies) \S+ ?", "", _command()).strip()
                    + f" --strategies {' '.join(sorted(extended))} --stop "
                    + f"{max(e['stop'] for e in extended.values()):.2f} --full-seeds 0 (its own --work folder)",
                    "strategies": extended,
                }
            }
            if extended
            else {}
        ),
        "cpu_seconds_total": cpu,
        "plot": _relative(Path(args.plot)),
    }
    choice = Path(args.work, "choice.json")  # the pool / rounds chosen from timed pilot jobs, written before the run
    if choice.is_file():
        details["run_choice"] = json.loads(choice.read_text())
    try:
        from _results import read_results

        old: dict[str, Any] | None = read_results("active_ner", Path(args.results_dir) if args.results_dir else None)
    except FileNotFoundError:
        old = None
    details["reported"] = reported_runs(old, details)
    done = {f"{r['strategy']}_{r['seed']}" for r in results}
    details["jobs_finished"] = sorted(done)
    details["jobs_not_finished"] = [name for name in _job_names(args) if name not in done]
    write_results(
        "active_ner",
        claims,
        details,
        command=_command(),
        results_dir=Path(args.results_dir) if args.results_dir else None,
        inline_number_lists=True,
    )
    _plot(curves, full_f1, Path(args.plot), [r["test_f1"] for r in full])
    for c in claims:
        print(json.dumps(c))


# The rounds of the claims' scaled protocol (--step 0.15 --stop 0.61): runs with other rounds get them in their key.
CLAIM_ROUNDS = (0.15, 0.61)


def reported_key(details: dict[str, Any]) -> str:
    """``details.reported``'s key for a run: its pool and test sizes (``pool1000_test500``; ``all`` = whole split),
    and its rounds when they are not the claims' 15% to 61% (``..._step2pct_stop21pct``).

    Example:
        >>> reported_key({"pool_sentences": 1000, "dev_test_sentences": 500})  # a file from before --test-limit
        'pool1000_test500'
        >>> reported_key({"pool_sentences": 3000, "test_sentences": "all (3,453)"})
        'pool3000_testall'
        >>> reported_key({"pool_sentences": 3000, "test_sentences": "all", "protocol": {"step": 0.02, "stop": 0.21}})
        'pool3000_testall_step2pct_stop21pct'
    """
    test = details.get("test_sentences", details.get("dev_test_sentences"))
    key = f"pool{details.get('pool_sentences')}_test{test if isinstance(test, int) else 'all'}"
    step, stop = (details.get("protocol", {}).get(k) for k in ("step", "stop"))
    if step is not None and stop is not None and (step, stop) != CLAIM_ROUNDS:
        key += f"_step{round(step * 100)}pct_stop{round(stop * 100)}pct"
    return key


def reported_runs(old: dict[str, Any] | None, details: dict[str, Any]) -> dict[str, Any]:
    """The earlier runs to keep beside this one's claims: ``old``'s own ``details.reported``, plus ``old`` itself
    (its command, date, machine, claims as ``claims_as_reported_rows`` and details) under :func:`reported_key`
    when it ran another protocol (pool, dev, test, rounds or budget rule) than ``details``.

    Example::

        reported_runs(read_results("active_ner"), details)  # {"pool1000_test500": {...}}
    """
    if old is None:
        return {}
    before = old.get("details", {})
    out: dict[str, Any] = dict(before.get("reported", {}))
    out.pop(reported_key(details), None)  # a run never reports itself (it may come back after another run's summary)
    same = reported_key(before) == reported_key(details) and before.get("dev_sentences") == details.get("dev_sentences")
    same = same and all(
        before.get("protocol", {}).get(k) == details["protocol"].get(k)
        for k in ("step", "stop", "patience", "max_epochs", "min_steps")
    )
    if same:
        return out
    entry = {
        "command": old.get("command"),
        "date": old.get("date"),
        "machine": old.get("machine"),
        "claims_as_reported_rows": list(old.get("claims", [])),
    }
    entry.update({k: v for k, v in before.items() if k not in ("reported", "plot")})
    out[reported_key(before)] = entry
    return out


def _job_names(args: argparse.Namespace) -> list[str]:
    """Every job of the run, in the order they start: one reference and seed 0 of every strategy, then the other
    references (every reference seed sets the 99% bar), then the other strategy seeds."""
    names = ["full_0"] if args.full_seeds else []
    names += [f"{st}_0" for st in args.strategies if args.seeds]
    names += [f"full_{s}" for s in range(1, args.full_seeds)]
    names += [f"{st}_{s}" for s in range(1, args.seeds) for st in args.strategies]
    return names


def _command() -> str:
    """This run's command without the machine-local paths (``--work``, ``--snapshot``, ``--results-dir``, ``--plot``)
    and the process split (``--only``, ``--summarize-only``): the command that reproduces the results file."""
    out, skip = [], False
    for arg in sys.argv[1:]:
        if skip and not arg.startswith("--"):
            continue
        skip = arg in ("--work", "--snapshot", "--results-dir", "--plot", "--only", "--extension")
        if not skip and arg != "--summarize-only":
            out.append(arg)
    return " ".join(["python benchmarks/active_ner.py", *out])


def _relative(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (for ``details.plot``)."""
    repo = Path(__file__).resolve().parents[1]
    path = path.resolve()
    return str(path.relative_to(repo)) if path.is_relative_to(repo) else str(path)


def _plot(curves: dict[str, dict[str, Any]], full_f1: float, path: Path, full_seeds: list[float] | None = None) -> None:
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
    if full_seeds and len(full_seeds) > 1:
        ax.axhspan(min(full_seeds), max(full_seeds), color="k", alpha=0.08, label="full data, seed range")
    ax.set_xlabel("% of training words labelled")
    ax.set_ylabel("entity F1, CoNLL-2003 test (dev-chosen epoch)")
    ax.set_title("Active learning for NER, CNN-CNN-LSTM tagger\n(mean of seeds, epochs chosen on dev)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def job_results(work: Path) -> list[dict[str, Any]]:
    """The finished jobs in ``work`` (``<strategy>_<seed>.json``; other files there, e.g. ``choice.json``, skipped).

    Example::

        job_results(Path("/tmp/active_ner"))  # [{"strategy": "full", "seed": 0, ...}, ...]
    """
    jobs = ("full", *STRATEGIES)
    return [
        json.loads(p.read_text())
        for p in sorted(work.glob("*_*.json"))
        if p.stem.rsplit("_", 1)[0] in jobs and p.stem.rsplit("_", 1)[1].isdigit()
    ]


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
    results = job_results(Path(args.work))
    snap = argparse.Namespace(**{**vars(args), "results_dir": str(out), "plot": str(out / "active_ner.png")})
    try:
        summarize(snap, results)
    except Exception as err:  # a partial set of jobs may not summarize yet; the tarball still holds them
        print(f"snapshot summary skipped: {err}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", nargs="+", default=["mnlp", "random"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--start", type=float, default=0.01)
    parser.add_argument("--step", type=float, default=0.05)
    parser.add_argument("--stop", type=float, default=0.61)
    parser.add_argument("--scale", type=float, default=1.0, help="share of the pool and of dev/test kept (1 = all)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--min-steps", type=int, default=50)
    parser.add_argument("--full-epochs", type=int, default=15, help="the reference's epochs under --patience 0")
    parser.add_argument(
        "--patience",
        type=int,
        default=3,
        help="every point (each round and the full-data reference) trains until its dev F1 has not improved for "
        "this many epochs (0: the fixed rule, --epochs per round and --full-epochs for the reference)",
    )
    parser.add_argument("--max-epochs", type=int, default=20, help="at most this many epochs per point (--patience)")
    parser.add_argument("--full-seeds", type=int, default=3)
    parser.add_argument("--mc-samples", type=int, default=10)
    parser.add_argument("--bald-pool", type=float, default=0.25)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument(
        "--eval-limit", type=int, default=None, help="the first N dev (testa) sentences choose epochs (default: all)"
    )
    parser.add_argument(
        "--test-limit",
        type=int,
        default=None,
        help="the first N test (testb) sentences give each point's F1 (default: all 3,453; read once per point)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--work", default="/tmp/active_ner")
    parser.add_argument("--results-dir", default=None)
    parser.add_argument(
        "--plot", default=str(Path(__file__).resolve().parents[1] / "docs/img/active_ner_paper_protocol.png")
    )
    parser.add_argument("--snapshot", default=None, help="folder refreshed with a summary after every job")
    parser.add_argument(
        "--only",
        nargs="+",
        default=None,
        help="run only these jobs (e.g. full_2 mnlp_1), to split one run over processes sharing --work",
    )
    parser.add_argument("--summarize-only", action="store_true", help="rebuild the JSON from finished jobs")
    parser.add_argument(
        "--extension",
        default=None,
        help="a job folder of the same command run to a later --stop (e.g. --strategies random --stop 0.91): "
        "crossings the stop cuts off are read from it (checked equal on the shared rounds)",
    )
    parser.add_argument("--tiny", action="store_true", help="a quick CPU check of the script (not a result)")
    args = parser.parse_args()
    if args.tiny:
        args.train_limit, args.eval_limit, args.test_limit, args.seeds, args.full_epochs = 600, 200, 200, 1, 2
        args.epochs, args.min_steps, args.step, args.stop, args.mc_samples = 1, 5, 0.1, 0.21, 3
        args.patience, args.max_epochs = min(args.patience, 1), 3
        args.start = 0.01
    Path(args.work).mkdir(parents=True, exist_ok=True)
    names = _job_names(args)  # a run cut short loses strategy seeds first, reference seeds last
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            raise SystemExit(f"--only: no such job {unknown}; the jobs are {names}")
        names = [n for n in names if n in args.only]
    jobs = [(args, n.rsplit("_", 1)[0], int(n.rsplit("_", 1)[1])) for n in names]
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
    results = job_results(Path(args.work))
    summarize(args, results)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
