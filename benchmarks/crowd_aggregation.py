"""Crowd-label aggregation: ours vs crowd-kit 1.4.2, accuracy on every real crowd dataset and DS fit speed.

    python benchmarks/crowd_aggregation.py            # full: 1M annotations, median of 5
    python benchmarks/crowd_aggregation.py --quick    # 100k annotations, median of 3 (smoke run)
    python benchmarks/crowd_aggregation.py --only mmsr kos   # those aggregators' accuracy/time rows, printed only
    python benchmarks/crowd_aggregation.py --only glad mace ds_time --merge   # re-run these, merge into the JSON

Sections (``--only``): ``accuracy`` (every aggregator's accuracy and fit time on every dataset; an aggregator key
such as ``glad`` re-runs only its rows), ``ds_time``, ``ds_memory``, ``glad_paths`` (where crowd-kit's and our
GLAD stop: crowd-kit on shuffled row orders and run on to convergence, the log posterior at each end). With
``--merge`` the re-run rows/sections replace theirs in ``results/crowd_aggregation.json``, every claim is
recomputed from the merged details and the plot is redrawn (`--only claims --merge` runs nothing else).

Accuracy: every dataset found by ``crowd_datasets()`` (``answers.csv`` + ``gold.csv``), ours (defaults) vs
crowd-kit (``n_iter=100, tol=1e-5``) for majority vote, Dawid-Skene and one-coin DS, on the items with gold.
Majority vote is reported under three named tie rules: crowd-kit's own (first label of its vote table),
ours ``random`` (seeded), and the exact expectation over uniformly random ties.

Every aggregator we share with crowd-kit (majority vote, Wawa, ZeroBasedSkill, gold majority vote, Dawid-Skene,
one-coin DS, MACE, GLAD, M-MSR, KOS; KOS on the binary datasets only) is fitted on every dataset, ours and
crowd-kit, accuracy and fit time (1 torch thread). GLAD is also fitted with ``crowdkit_compat=True`` (crowd-kit's
GLAD replayed bit for bit: ``glad_accuracy_vs_crowdkit`` is that mode's, the default converged fit's gap is stated
beside it; ``glad_fit_time_vs_crowdkit`` is the default's, the replay's time beside it). Gold
majority vote (and DS with gold) learn from half of the gold items and are scored on the other half.

Memory (``ds_memory_vs_crowdkit_k200``): W = 1,000 workers, K = 200 classes, 10k items x 10 labels; each fit runs
in a fresh process and reports the peak resident memory it adds (Linux ``VmHWM`` after resetting it).

Speed: a synthetic table (100k items x 10 labels from 1k workers, 10 classes; worker accuracy ~ Beta(4, 2),
errors ~ Dirichlet(1)), Dawid-Skene fit from the same pandas DataFrame (our time includes building and
validating the annotation table), ours and crowd-kit interleaved, median of repeats. Ours runs with
``torch.set_num_threads(1)``: crowd-kit (pandas/NumPy) is single-threaded too, and on a shared 2-core machine
one torch thread avoids OpenMP stalls; the 2-thread time is in ``details``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _results import claim, command_line, read_results, write_json, write_results
from trinity_lightning.crowd import (
    GLAD,
    KOS,
    MACE,
    MMSR,
    DawidSkene,
    GoldMajorityVote,
    MajorityVote,
    OneCoinDawidSkene,
    Wawa,
    ZeroBasedSkill,
)
from trinity_lightning.crowd.simulate import random_confusions, simulate_annotations
from trinity_lightning.data import crowd_datasets, load_crowd


def _accuracy(labels: pd.Series, gold: pd.Series) -> float:
    truth = gold.reindex(labels.index)
    known = truth.notna().to_numpy()  # compare on the gold items only: reindexing a partial gold makes it float
    expected = gold.reindex(labels.index[known]).astype(gold.dtype).astype(str).to_numpy()
    return float((labels.astype(str).to_numpy()[known] == expected).mean())


def _ours(model, frame: pd.DataFrame) -> pd.Series:
    model.fit(frame)
    return pd.Series(model.table_.decode_labels(model.labels_), index=model.table_.item_ids)


def _expected_random_ties(mv: MajorityVote, gold: pd.Series) -> float:
    """Exact expected accuracy of majority vote when ties are broken uniformly at random."""
    votes = mv.votes_.numpy()
    tied = votes == votes.max(axis=1, keepdims=True)
    classes = [str(c) for c in mv.table_.classes]
    truth = gold.reindex(mv.table_.item_ids).astype(str).to_numpy()
    known = gold.reindex(mv.table_.item_ids).notna().to_numpy()
    column = np.array([classes.index(t) if t in classes else -1 for t in truth])
    hit = np.where(column >= 0, tied[np.arange(len(tied)), np.maximum(column, 0)], False)
    return float((hit / tied.sum(axis=1))[known].mean())


def _gold_split(gold: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Gold items split in two halves (every other item in sorted order): skills from one, accuracy on the other."""
    ordered = gold.sort_index()
    return ordered.iloc[::2], ordered.iloc[1::2]


def _ck_labels(model, frame: pd.DataFrame, gold_fit: pd.Series | None = None) -> pd.Series:
    if gold_fit is not None:
        return model.fit(frame, gold_fit).predict(frame)
    return model.fit_predict(frame)


# every aggregator we share with crowd-kit: (key, ours, crowd-kit class name, needs gold)
SHARED = [
    ("mv", lambda: MajorityVote(tie_break="smallest"), "MajorityVote", False),
    ("wawa", Wawa, "Wawa", False),
    ("zbs", ZeroBasedSkill, "ZeroBasedSkill", False),
    # workers without a gold item get skill 0.5 (crowd-kit's GoldMajorityVote raises for them: recorded as NaN)
    ("gold_mv", lambda: GoldMajorityVote(on_missing_skill="value", default_skill=0.5), "GoldMajorityVote", True),
    ("ds", DawidSkene, "DawidSkene", False),
    ("one_coin", OneCoinDawidSkene, "OneCoinDawidSkene", False),
    ("mace", MACE, "MACE", False),
    ("glad", GLAD, "GLAD", False),
    ("mmsr", MMSR, "MMSR", False),
    ("kos", KOS, "KOS", False),  # binary only: NaN on crowd_dog (4 classes) for both, which raise
]


def accuracy_table(only: list[str] | None = None) -> dict[str, dict[str, float]]:
    """The accuracy/time table; ``only``: just these ``SHARED`` keys (``--only``), without the extra DS/MV rows."""
    import crowdkit.aggregation as ck

    _patch_crowdkit()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # crowd-kit (pandas/NumPy) is single-threaded too
    results: dict[str, dict[str, float]] = {}
    for name in crowd_datasets():
        frame, gold = load_crowd(name)
        fit_half, eval_half = _gold_split(gold)
        row: dict[str, float] = {"items": float(frame["task"].nunique()), "annotations": float(len(frame))}
        for key, make, ck_name, needs_gold in SHARED:
            if only is not None and key not in only:
                continue
            if key == "kos" and frame["label"].nunique() != 2:  # KOS is binary: ours and crowd-kit both raise
                for who in ("ours", "crowdkit"):
                    row[f"{who}_{key}"], row[f"{who}_{key}_s"] = float("nan"), float("nan")
                continue
            truth = eval_half if needs_gold else gold
            model = make()
            start = time.perf_counter()
            model.fit(frame, fit_half) if needs_gold else model.fit(frame)
            seconds = time.perf_counter() - start
            labels = pd.Series(model.table_.decode_labels(model.labels_), index=model.table_.item_ids)
            row[f"ours_{key}"], row[f"ours_{key}_s"] = _accuracy(labels, truth), seconds
            anchor = getattr(ck, ck_name)(**({"n_iter": 100, "tol": 1e-5} if key in ("ds", "one_coin") else {}))
            start = time.perf_counter()
            try:
                ck_labels = _ck_labels(anchor, frame, fit_half if needs_gold else None)
            except ValueError as err:  # GoldMajorityVote: a worker without gold items
                print(f"  crowd-kit {ck_name} failed on {name}: {err}", flush=True)
                row[f"crowdkit_{key}"], row[f"crowdkit_{key}_s"] = float("nan"), float("nan")
                continue
            ck_seconds = time.perf_counter() - start
            row[f"crowdkit_{key}"], row[f"crowdkit_{key}_s"] = _accuracy(ck_labels, truth), ck_seconds
            if key == "glad":  # crowd-kit's GLAD replayed (crowdkit_compat): its numbers, bit for bit
                compat_model = GLAD(crowdkit_compat=True)
                start = time.perf_counter()
                compat_model.fit(frame)
                row["ours_glad_compat_s"] = time.perf_counter() - start
                table = compat_model.table_
                compat_labels = pd.Series(table.decode_labels(compat_model.labels_), index=table.item_ids)
                row["ours_glad_compat"] = _accuracy(compat_labels, truth)
                ck_probas = anchor.probas_.reindex(table.item_ids)[list(table.classes)].to_numpy()
                row["glad_compat_max_abs_posterior_diff"] = float(
                    np.abs(compat_model.probas_.numpy() - ck_probas).max()
                )
                row["ours_glad_iterations"] = float(model.n_iter_)
                row["ours_glad_compat_iterations"] = float(compat_model.n_iter_)
                row["crowdkit_glad_iterations"] = float(len(anchor.loss_history_))
            if key == "ds":
                row["ours_ds_iterations"] = float(model.n_iter_)
                row["crowdkit_ds_iterations"] = float(len(anchor.loss_history_))
                probas_ck = anchor.probas_
        if only is not None:
            results[name] = row
            print(name, {k: round(v, 4) for k, v in row.items()}, flush=True)
            continue
        mv = MajorityVote(tie_break="random", seed=0)
        row["ours_mv_random_ties"] = _accuracy(_ours(mv, frame), gold)
        row["mv_ties"] = float(mv.ties_)
        row["mv_expected_random_ties"] = _expected_random_ties(mv, gold)
        compat = DawidSkene(crowdkit_compat=True)
        row["ours_ds_crowdkit_compat"] = _accuracy(_ours(compat, frame), gold)
        probas = probas_ck.reindex(compat.table_.item_ids)[[c for c in compat.table_.classes]].to_numpy()
        row["crowdkit_compat_max_abs_posterior_diff"] = float(np.abs(compat.probas_.numpy() - probas).max())
        gold_ds = DawidSkene().fit(frame, fit_half)  # gold labels for half the gold items teach DS
        row["ours_ds_half_gold_on_other_half"] = _accuracy(
            pd.Series(gold_ds.table_.decode_labels(gold_ds.labels_), index=gold_ds.table_.item_ids), eval_half
        )
        results[name] = row
        print(name, {k: round(v, 4) for k, v in row.items()}, flush=True)
    torch.set_num_threads(threads)
    return results


def _patch_crowdkit() -> None:
    """crowd-kit 1.4.2's Wawa / ZeroBasedSkill / GoldMajorityVote call scikit-learn's ``check_is_fitted``, which
    fails on their attrs classes with scikit-learn >= 1.6: replace it with a plain attribute check."""
    import importlib

    def check(estimator, attributes=None, **_):
        for name in [attributes] if isinstance(attributes, str) else attributes or []:
            if getattr(estimator, name, None) is None:
                raise RuntimeError(f"{type(estimator).__name__} is not fitted ({name})")

    for module in ("wawa", "zero_based_skill", "gold_majority_vote"):
        mod = importlib.import_module(f"crowdkit.aggregation.classification.{module}")
        if hasattr(mod, "check_is_fitted"):
            mod.check_is_fitted = check


def synthetic_frame(num_items: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 10, num_items)
    table = simulate_annotations(truth, random_confusions(1000, 10, seed=seed), labels_per_item=10, seed=seed)
    frame = pd.DataFrame(
        {
            "task": table.item_ids.to_numpy()[table.items.numpy()],
            "worker": table.workers.numpy(),
            "label": table.labels.numpy(),
        }
    )
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True), truth  # rows in no particular order


def speed(num_items: int, repeats: int) -> dict[str, object]:
    """DS fit time: ours at default settings (torch's threads: all cores), ours at 1 thread, crowd-kit; interleaved."""
    import crowdkit.aggregation as ck

    frame, truth = synthetic_frame(num_items)
    all_threads = torch.get_num_threads()
    ours: list[float] = []
    ours_1thread: list[float] = []
    anchor: list[float] = []
    info: dict[str, float] = {}
    for _ in range(repeats):  # interleaved: ours (default threads), crowd-kit, ours (1 thread)
        start = time.perf_counter()
        model = DawidSkene(threads=all_threads).fit(frame)  # all cores (the default picks this on an idle machine)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        reference = ck.DawidSkene(n_iter=100, tol=1e-5).fit(frame)
        anchor.append(time.perf_counter() - start)
        start = time.perf_counter()
        DawidSkene(threads=1).fit(frame)
        ours_1thread.append(time.perf_counter() - start)
        print(
            f"  ours ({all_threads} threads) {ours[-1]:.3f}s  crowd-kit {anchor[-1]:.3f}s  "
            f"ours (1 thread) {ours_1thread[-1]:.3f}s",
            flush=True,
        )
    ours_labels = np.asarray(model.table_.decode_labels(model.labels_))
    info["ours_accuracy"] = float((ours_labels == truth[model.table_.item_ids.to_numpy()]).mean())
    ck_labels = reference.labels_.sort_index()
    info["crowdkit_accuracy"] = float((ck_labels.to_numpy() == truth[ck_labels.index.to_numpy()]).mean())
    info["ours_iterations"] = float(model.n_iter_)
    info["crowdkit_iterations"] = float(len(reference.loss_history_))
    return {
        "annotations": len(frame),
        "items": num_items,
        "workers": 1000,
        "classes": 10,
        "repeats": repeats,
        "threads_default": all_threads,
        "ours_s": ours,
        "crowdkit_s": anchor,
        "ours_1thread_s": ours_1thread,
        "ours_median_s": statistics.median(ours),
        "crowdkit_median_s": statistics.median(anchor),
        "ours_1thread_median_s": statistics.median(ours_1thread),
        "ratio_all_threads": statistics.median(anchor) / statistics.median(ours),
        "ratio_1thread": statistics.median(anchor) / statistics.median(ours_1thread),
        "ours_per_iteration_s": statistics.median(ours) / info["ours_iterations"],
        "crowdkit_per_iteration_s": statistics.median(anchor) / info["crowdkit_iterations"],
        **info,
    }


def k200_frame(num_items: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """W = 1,000 workers, K = 200 classes, 10 labels per item; accuracy ~ Beta(4, 2), errors uniform."""
    rng = np.random.default_rng(seed)
    K, W, per = 200, 1000, 10
    truth = rng.integers(0, K, num_items)
    items = np.repeat(np.arange(num_items), per)
    workers = rng.integers(0, W, len(items))
    right = rng.random(len(items)) < rng.beta(4, 2, W)[workers]
    labels = np.where(right, truth[items], rng.integers(0, K, len(items)))
    frame = pd.DataFrame({"task": items, "worker": workers, "label": labels})
    return frame.drop_duplicates(["task", "worker"]).reset_index(drop=True), truth


def _peak_child(which: str, threads: int, num_items: int) -> None:
    """Run in a fresh process: the peak resident memory a DS fit adds (Linux VmHWM after resetting it)."""
    frame, truth = k200_frame(num_items)
    torch.set_num_threads(threads)
    if which == "crowdkit":
        import crowdkit.aggregation as ck

        model_ck = ck.DawidSkene(n_iter=100, tol=1e-5)
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    base = _status_kb("VmRSS")
    start = time.perf_counter()
    if which == "crowdkit":
        labels = model_ck.fit(frame).labels_.sort_index()
        accuracy = float((labels.to_numpy() == truth[labels.index.to_numpy()]).mean())
    else:
        model = DawidSkene().fit(frame)
        accuracy = float((model.labels_.numpy() == truth[model.table_.item_ids.to_numpy()]).mean())
    seconds = time.perf_counter() - start
    import json

    print(json.dumps({"peak_mb": (_status_kb("VmHWM") - base) / 1024, "s": seconds, "accuracy": accuracy}))


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def memory_k200(num_items: int) -> dict[str, object]:
    """Peak memory a DS fit adds, W = 1,000, K = 200: crowd-kit, ours at 1 thread and at all threads."""
    import json
    import os
    import subprocess

    out: dict[str, object] = {"items": num_items, "workers": 1000, "classes": 200, "labels_per_item": 10}
    runs = [("ours", 1), ("ours", os.cpu_count() or 1), ("crowdkit", 1)]
    for which, threads in runs:
        command = [
            sys.executable,
            __file__,
            "--peak-child",
            which,
            "--threads",
            str(threads),
            "--items",
            str(num_items),
        ]
        text = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        record = json.loads(text)
        key = "crowdkit" if which == "crowdkit" else f"ours_{threads}threads"
        out[key] = record
        print(f"  k200 {key}: {record}", flush=True)
    out["annotations"] = len(k200_frame(num_items)[0])
    return out


# a raw timing record (not a results-format file), merged into crowd_aggregation.json
GPU_RESULT = Path(__file__).parent / "results" / "raw" / "crowd_aggregation_gpu.json"


def gpu_speed(out: Path, repeats: int = 5) -> None:
    """Our DS fit on CUDA (table built on CPU from the same DataFrame, then moved), median of repeats."""
    frame, truth = synthetic_frame(100_000)
    DawidSkene(device="cuda").fit(frame)  # warm-up: CUDA context, cuSPARSE handles
    times, fit_only = [], []
    from trinity_lightning.crowd import AnnotationTable

    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        model = DawidSkene(device="cuda").fit(frame)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        table = AnnotationTable.read(frame)
        torch.cuda.synchronize()
        start = time.perf_counter()
        DawidSkene(device="cuda").fit(table)
        torch.cuda.synchronize()
        fit_only.append(time.perf_counter() - start)
    labels = np.asarray(model.table_.decode_labels(model.labels_.cpu()))
    result = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "annotations": len(frame),
        "repeats": repeats,
        "ours_cuda_s": times,
        "ours_cuda_median_s": statistics.median(times),
        "ours_cuda_fit_only_s": fit_only,
        "ours_cuda_fit_only_median_s": statistics.median(fit_only),
        "iterations": model.n_iter_,
        "accuracy": float((labels == truth[model.table_.item_ids.to_numpy()]).mean()),
    }
    write_json(out, result)
    print(result)


SECTIONS = ("accuracy", "ds_time", "ds_memory", "glad_paths")


def glad_log_posterior(frame: pd.DataFrame, alphas: pd.Series, betas: pd.Series) -> float:
    """GLAD's log posterior at ``(alphas, betas)`` (indexed by worker / task), written out independently of ours:
    sum over items of log sum_c prior_c prod_a P(y_a | c), plus the unit Gaussian log priors (means 1)."""
    classes = pd.unique(frame["label"])
    K = len(classes)
    s = alphas.reindex(frame["worker"]).to_numpy() * np.exp(betas.reindex(frame["task"]).to_numpy())
    right, wrong = -np.logaddexp(0, -s), -np.logaddexp(0, s) - np.log(K - 1)
    per_class = np.stack([np.where(frame["label"].to_numpy() == c, right, wrong) for c in classes], axis=1)
    sums = pd.DataFrame(per_class).groupby(frame["task"].to_numpy()).sum().to_numpy() - np.log(K)
    top = sums.max(axis=1)
    evidence = float((top + np.log(np.exp(sums - top[:, None]).sum(axis=1))).sum())
    priors = sum(float((-0.5 * ((v.to_numpy() - 1.0) ** 2 + np.log(2 * np.pi))).sum()) for v in (alphas, betas))
    return evidence + priors


def glad_paths(shuffles: int = 3, replay_orders: int = 20) -> dict[str, dict[str, object]]:
    """Where GLAD stops: crowd-kit at its defaults on the rows as given and on ``shuffles`` row orders, crowd-kit
    run on (``tol=0, n_iter=40``), ours (defaults and ``crowdkit_compat=True``); accuracy, iterations and the log
    posterior each ends at (the objective EM maximises). Slow: about 10 crowd-kit GLAD fits per dataset. Then
    crowd-kit's accuracy on ``replay_orders`` more row orders, by our bit-for-bit replay (``crowdkit_compat``)."""
    import crowdkit.aggregation as ck

    torch.set_num_threads(1)
    out: dict[str, dict[str, object]] = {}
    for name in crowd_datasets():
        frame, gold = load_crowd(name)
        ends: list[tuple[str, pd.Series, int, pd.Series, pd.Series, float]] = []  # labels, iterations, alphas, ...
        for key, compat in (("ours", False), ("ours_crowdkit_compat", True)):
            start = time.process_time()
            model = GLAD(crowdkit_compat=compat).fit(frame)
            seconds = time.process_time() - start
            table = model.table_
            labels = pd.Series(table.decode_labels(model.labels_), index=table.item_ids)
            alphas = pd.Series(model.alphas_.numpy(), index=table.worker_ids)
            ends.append(
                (key, labels, model.n_iter_, alphas, pd.Series(model.betas_.numpy(), index=table.item_ids), seconds)
            )
        runs: list[tuple[str, pd.DataFrame, dict[str, Any]]] = [("crowdkit", frame, {})]
        runs += [
            (f"crowdkit_rows_shuffled_{seed}", frame.sample(frac=1.0, random_state=seed), {})
            for seed in range(shuffles)
        ]
        runs += [("crowdkit_tol0_40_iterations", frame, {"tol": 0.0, "n_iter": 40})]
        replays = []  # crowd-kit's GLAD on many row orders, cheaply: our bit-for-bit replay of it (crowdkit_compat)
        for seed in range(replay_orders):
            rows = frame.sample(frac=1.0, random_state=100 + seed).reset_index(drop=True)
            model = GLAD(crowdkit_compat=True).fit(rows)
            replays.append(
                _accuracy(pd.Series(model.table_.decode_labels(model.labels_), index=model.table_.item_ids), gold)
            )
        for key, rows, kwargs in runs:
            start = time.process_time()
            ref = ck.GLAD(**kwargs).fit(rows.reset_index(drop=True))
            ends.append(
                (
                    key,
                    pd.Series(ref.labels_),
                    len(ref.loss_history_),
                    ref.alphas_,
                    ref.betas_,
                    time.process_time() - start,
                )
            )
        row: dict[str, object] = {}
        for key, labels, iterations, alphas, betas, seconds in ends:
            row[key] = {
                "accuracy": _accuracy(labels, gold),
                "iterations": iterations,
                "log_posterior": glad_log_posterior(frame, alphas, betas),
                "cpu_s": seconds,
            }
            print(f"  {name} {key}: {row[key]}", flush=True)
        row["crowdkit_replay_row_orders"] = {"orders": replay_orders, "accuracy": replays}
        print(f"  {name} crowd-kit (replayed) on {replay_orders} row orders: {sorted(replays)}", flush=True)
        out[name] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100k annotations, 3 repeats, K=200 run on 2k items")
    parser.add_argument("--gpu-out", type=Path, help="only time our DS on CUDA and write the result here")
    parser.add_argument("--plot-only", action="store_true", help="redraw the plot from the results file")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[*SECTIONS, "claims", *(key for key, *_ in SHARED)],
        help="run only these sections (accuracy: every aggregator's accuracy/time rows; ds_time; ds_memory; "
        "glad_paths) or only these aggregators' accuracy/time rows (mv, ..., glad, mmsr, kos); printed, and "
        "written into the results file with --merge ('claims --merge': run nothing, recompute claims and plot)",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="merge what was run into the existing results file (other rows and sections kept), recompute the "
        "claims from the merged details and redraw the plot",
    )
    parser.add_argument("--peak-child", choices=["ours", "crowdkit"], help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--items", type=int, default=10_000, help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.peak_child:
        _peak_child(args.peak_child, args.threads, args.items)
        return
    if args.plot_only:
        saved = read_results("crowd_aggregation")["details"]
        _plot(saved["accuracy"], saved["speed"], saved.get("speed_gpu"))
        return
    if args.gpu_out is not None:
        gpu_speed(args.gpu_out)
        return
    chosen = set(args.only or SECTIONS) - {"claims"}
    aggregators = [key for key, *_ in SHARED if key in chosen]
    cpu_start = time.process_time()
    fresh: dict[str, object] = {}
    if "accuracy" in chosen:
        fresh["accuracy"] = accuracy_table()
    elif aggregators:
        fresh["accuracy"] = accuracy_table(aggregators)
    if "ds_time" in chosen:
        fresh["speed"] = speed(10_000 if args.quick else 100_000, 3 if args.quick else 5)
    if "ds_memory" in chosen:
        fresh["memory_k200"] = memory_k200(2_000 if args.quick else 10_000)
    if "glad_paths" in chosen:
        fresh["glad_paths"] = glad_paths()
    cpu = time.process_time() - cpu_start
    if args.only and not args.merge:
        print("(--only without --merge: nothing written)")
        return
    details: dict[str, Any] = read_results("crowd_aggregation")["details"] if args.merge else {}
    if args.merge and "accuracy" in fresh:  # rows of the re-run aggregators replace theirs; the others stay
        merged = details.setdefault("accuracy", {})
        for name, row in fresh.pop("accuracy").items():  # type: ignore[attr-defined]
            merged.setdefault(name, {}).update(row)
    details.update(fresh)
    details["crowdkit_version"] = _version("crowd-kit")
    details["protocol"] = __doc__.strip()
    if chosen:  # which run measured which section: the file's "command" is the full run that redoes them all
        runs = list(details.get("runs", []))
        runs.append({"command": command_line(), "sections": sorted(chosen), "cpu_s": cpu, "load": os.getloadavg()})
        details["runs"] = runs
    if GPU_RESULT.is_file():  # measured on a lent GPU machine with --gpu-out (crowd-kit has no GPU path)
        import json

        details["speed_gpu"] = json.loads(GPU_RESULT.read_text())
    details["plot"] = "docs/img/crowd_aggregation.png"
    claims = _claims(details)
    _plot(details["accuracy"], details["speed"], details.get("speed_gpu"))  # type: ignore[arg-type]
    path = write_results("crowd_aggregation", claims, details, command="python benchmarks/crowd_aggregation.py")
    print(path)
    for c in claims:
        print(c)


def _claims(details: dict[str, Any]) -> list[dict[str, Any]]:
    """Every claim of this benchmark, from the (possibly merged) details."""
    accuracy, timing, memory = details["accuracy"], details["speed"], details["memory_k200"]

    def worst(key: str) -> str:
        return min(accuracy, key=lambda n: accuracy[n][f"ours_{key}"] - accuracy[n][f"crowdkit_{key}"])

    def total(key: str, who: str) -> float:
        return sum(accuracy[n][f"{who}_{key}_s"] for n in accuracy)

    ds_worst, mace_worst, glad_worst = worst("ds"), worst("mace"), worst("glad")
    glad_note = ""
    if "glad_paths" in details:  # where crowd-kit's GLAD ends when it is run on, and on other row orders
        paths = details["glad_paths"]
        run_on = min(accuracy[n]["ours_glad"] - paths[n]["crowdkit_tol0_40_iterations"]["accuracy"] for n in paths)
        shuffled = [k for k in paths[glad_worst] if k.startswith("crowdkit_rows_shuffled")]
        orders = ", ".join(f"{paths[glad_worst][k]['accuracy']:.4f}" for k in shuffled)
        glad_note = (
            f"; ours (defaults) minus crowd-kit run on (tol=0, up to 40 iterations), worst case: {run_on:+.4f}; "
            f"crowd-kit (defaults) on {len(shuffled)} other row orders of {glad_worst}: {orders}"
        )
        replay = paths[glad_worst].get("crowdkit_replay_row_orders")
        if replay is not None:
            counts = pd.Series(replay["accuracy"]).round(5).value_counts().sort_index()
            glad_note += f", on {replay['orders']} more (replayed): " + ", ".join(
                f"{acc:.5f} x{n}" for acc, n in counts.items()
            )
        glad_note += " (details.glad_paths)"
    compat = all("ours_glad_compat" in accuracy[n] for n in accuracy)
    if compat:  # the claim is crowdkit_compat's; the default (converged) fit's worst case is stated beside it
        default_worst = glad_worst
        glad_worst = min(accuracy, key=lambda n: accuracy[n]["ours_glad_compat"] - accuracy[n]["crowdkit_glad"])
        diff = max(accuracy[n]["glad_compat_max_abs_posterior_diff"] for n in accuracy)
        glad_note = (
            f"; max |posterior difference| over all items of all sets: {diff:.1e}. Ours at defaults (EM run to "
            f"convergence) minus crowd-kit, worst case: "
            f"{accuracy[default_worst]['ours_glad'] - accuracy[default_worst]['crowdkit_glad']:+.4f} "
            f"({default_worst}: one item near 50/50 on the other side of crowd-kit's early stop)" + glad_note
        )
    glad_ours_key = "ours_glad_compat" if compat else "ours_glad"
    mem_ours = float(memory["ours_1threads"]["peak_mb"])
    mem_ck = float(memory["crowdkit"]["peak_mb"])
    claims = [
        claim(
            "ds_accuracy_vs_crowdkit",
            f"Dawid-Skene accuracy vs gold, ours (defaults) minus crowd-kit 1.4.2 (n_iter=100, tol=1e-5), worst case "
            f"over {len(accuracy)} real crowd datasets ({ds_worst})",
            ours=accuracy[ds_worst]["ours_ds"],
            anchor=accuracy[ds_worst]["crowdkit_ds"],
            better="higher",
            unit="accuracy",
            target_delta=-0.001,
        ),
        claim(
            "ds_fit_time_vs_crowdkit",
            f"Dawid-Skene fit time from a pandas DataFrame, {timing['annotations']:,} annotations "
            f"({timing['items']:,} items, 1k workers, 10 classes), ours at default settings (torch's "
            f"{timing['threads_default']} threads, CPU) vs crowd-kit 1.4.2, interleaved, median of {timing['repeats']}; "
            f"1 thread: {timing['ratio_1thread']:.1f}x (details.speed)",
            ours=timing["ours_median_s"],
            anchor=timing["crowdkit_median_s"],
            better="lower",
            unit="s",
            target=30.0,
        ),
        claim(
            "ds_memory_vs_crowdkit_k200",
            f"peak memory a Dawid-Skene fit adds, W = 1,000 workers, K = 200 classes, {memory['annotations']:,} "
            "annotations, fresh process each, crowd-kit 1.4.2 / ours (1 thread; all threads in details.memory_k200)",
            ours=mem_ours,
            anchor=mem_ck,
            better="lower",
            unit="MB",
            target=1.0,
        ),
        claim(
            "mace_accuracy_vs_crowdkit",
            f"MACE accuracy vs gold, ours (defaults) minus crowd-kit 1.4.2 MACE (defaults), worst case over "
            f"{len(accuracy)} real crowd datasets ({mace_worst})",
            ours=accuracy[mace_worst]["ours_mace"],
            anchor=accuracy[mace_worst]["crowdkit_mace"],
            better="higher",
            unit="accuracy",
            target_delta=-0.001,
        ),
        claim(
            "mace_fit_time_vs_crowdkit",
            f"MACE fit time summed over the {len(accuracy)} real crowd datasets (one fit each), ours (1 torch thread; "
            "crowd-kit's 10 restarts share one seed, so they are identical: ours runs that start once) vs crowd-kit "
            "1.4.2",
            ours=total("mace", "ours"),
            anchor=total("mace", "crowdkit"),
            better="lower",
            unit="s",
            target=10.0,
        ),
        claim(
            "glad_accuracy_vs_crowdkit",
            f"GLAD accuracy vs gold, ours ({'crowdkit_compat=True: crowd-kit replayed bit for bit' if compat else 'defaults'}) "
            f"minus crowd-kit 1.4.2 GLAD (defaults), worst case over {len(accuracy)} real crowd datasets "
            f"({glad_worst}){glad_note}",
            ours=accuracy[glad_worst][glad_ours_key],
            anchor=accuracy[glad_worst]["crowdkit_glad"],
            better="higher",
            unit="accuracy",
            target_delta=-0.001,
        ),
        claim(
            "glad_fit_time_vs_crowdkit",
            f"GLAD fit time summed over the {len(accuracy)} real crowd datasets (one fit each), ours (1 torch thread, "
            "exact per-parameter Newton M-step, run to convergence) vs crowd-kit 1.4.2 (25 CG steps per M-step)"
            + (
                f"; crowdkit_compat=True (the replay): {total('glad_compat', 'ours'):.2f} s, "
                f"{total('glad', 'crowdkit') / total('glad_compat', 'ours'):.1f}x"
                if compat
                else ""
            ),
            ours=total("glad", "ours"),
            anchor=total("glad", "crowdkit"),
            better="lower",
            unit="s",
            target=20.0,
        ),
    ]
    return claims


def _plot(accuracy: dict[str, dict[str, float]], timing: dict[str, object], gpu: dict[str, object] | None) -> None:
    """Every aggregator on every dataset, ours beside crowd-kit: accuracy (top row) and fit time (bottom, log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(accuracy)
    keys = [key for key, *_ in SHARED]
    fig, axes = plt.subplots(2, len(names), figsize=(3.2 * len(names), 6), squeeze=False)
    x = np.arange(len(keys))
    for col, name in enumerate(names):
        row = accuracy[name]
        top, bottom = axes[0][col], axes[1][col]
        for offset, who, color in ((-0.2, "ours", "tab:blue"), (0.2, "crowdkit", "tab:gray")):
            label = "ours" if who == "ours" else "crowd-kit 1.4.2"
            values = [np.nan if row.get(f"{who}_{k}") is None else row[f"{who}_{k}"] for k in keys]
            seconds = [np.nan if row.get(f"{who}_{k}_s") is None else row[f"{who}_{k}_s"] for k in keys]
            top.bar(x + offset, values, 0.4, color=color, label=label)
            bottom.bar(x + offset, seconds, 0.4, color=color, label=label)
        top.set_ylim(0.4, 1.0)  # KOS is ~0.5 on rte
        top.set_title(f"{name.removeprefix('crowd_')} ({int(row['annotations']):,} labels)", fontsize=9)
        bottom.set_yscale("log")
        for ax in (top, bottom):
            ax.set_xticks(x, keys, rotation=60, fontsize=7)
        if col == 0:
            top.set_ylabel("accuracy vs gold")
            bottom.set_ylabel("fit time, s (log)")
            top.legend(fontsize=7, loc="lower left")
    ratio_1 = float(timing["crowdkit_median_s"]) / float(timing["ours_1thread_median_s"])
    ratio_all = float(timing["crowdkit_median_s"]) / float(timing["ours_median_s"])
    fig.suptitle(
        f"Every aggregator on every shared crowd dataset, ours vs crowd-kit (missing bar: that method raises; KOS is binary). "
        f"Dawid-Skene, {timing['annotations']:,} annotations: {ratio_1:.1f}x at 1 thread, "
        f"{ratio_all:.1f}x at {timing['threads_default']}",
        fontsize=9,
    )
    fig.tight_layout()
    out = Path(__file__).resolve().parents[1] / "docs" / "img" / "crowd_aggregation.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    main()
