"""Semi-supervised NRM benchmark: CE, two-path CE, NRM, Max-Min NRM (and Max-Min NRM without RPN), paired seeds.

Protocol (``--scale paper``, meant for the GPU machine): MNIST with 100 labels (10 per class) and the rest of the
60k training images unlabelled (1,000 held out for validation), 1,500 steps; CIFAR-10 (the shared JPEG copy) with
4,000 labels (400 per class) on a stratified 20,000-image training subsample (the rest unlabelled), 1,000 steps.
Same architecture, same steps, same labelled batches for every method; 5 seeds (the seed also draws the labelled
set), so every method's seed-``s`` run sees the same labels. Methods:

* ``ce``: the supervised baseline (the Max path only, CE on the labelled batch).
* ``two_path_ce``: the matched baseline of Max-Min: the same Max and Min paths, CE on both, the prediction the
  average of their logits, no reconstruction, no RPN, labelled data only.
* ``nrm``, ``maxmin_nrm`` (max-min CE + reconstruction + RPN), ``maxmin_nrm_no_rpn``.

Claims (MNIST 100 labels, the lowest label count): ``maxmin_nrm_vs_ce_semisup`` (Max-Min NRM minus CE, mean over
seeds, with the paired 95% t-interval of the per-seed differences in ``interval95``; the target asks +2 points
with the interval above 0), ``maxmin_nrm_vs_two_path_ce`` (Max-Min NRM minus the two-path CE: what the NRM terms
add beyond the two-path ensemble) and ``rpn_ablation_delta``.

Augmented CIFAR-10 (``--augment``, issue 20 section 4): the same CIFAR-10 protocol with a longer schedule and the
standard augmentation of every training batch, labelled and unlabelled (a random 32x32 crop of the image padded
by 4 pixels with reflection + a random horizontal flip, on the device: ``SemiSupervisedDataModule(augment=True)``;
never on validation or test images). Its runs are summarised as ``cifar10_aug``, apart from the plain CIFAR-10
runs, and reported (``details.reported``: mean +- std per method, Max-Min NRM minus CE / minus two-path CE with
paired 95% t-intervals), not claimed; the claims stay on the plain runs.

Scales: ``--scale paper`` as above (15 runs of 1,500 MNIST steps, about 1 GPU-minute each); ``--scale cpu``: MNIST
only, 400 steps, 10,000 unlabelled images, 5,000 test images, 5 seeds of ce / two_path_ce / maxmin_nrm (about
1.5 h of one idle CPU core); ``--scale smoke`` (= ``--quick``): 30 steps, 1 seed; ``--scale cifar_aug``: augmented
CIFAR-10, 2,500 steps, ce / two_path_ce / maxmin_nrm, seeds 0-2 (9 runs, one GPU call of about 4 minutes; on a
CPU a Max-Min NRM step costs about 5 CPU-seconds, so about 3.5 CPU-hours per Max-Min NRM run).

Usage::

    python benchmarks/nrm_semisupervised.py --quick                 # seconds on a CPU: wiring check
    python benchmarks/nrm_semisupervised.py --scale paper --workers 16   # full protocol (GPU)
    python benchmarks/nrm_semisupervised.py --aggregate runs.jsonl  # rebuild the results file from run records
    python benchmarks/nrm_semisupervised.py --figures weights.pt    # docs/img/nrm_*.png from saved weights
    python benchmarks/nrm_semisupervised.py --subsample-cifar10 .device_data  # the 20k CIFAR-10 subsample
    TRINITY_DATA=.device_data python benchmarks/nrm_semisupervised.py --datasets cifar10 --augment \
        --steps '{"cifar10": 2500}' --methods ce two_path_ce maxmin_nrm --seeds 0 1 2 --workers 9 \
        --max-time 00:00:03:50 --runs $OUT/nrm_cifar_aug.jsonl --results-dir $OUT   # augmented CIFAR-10 (GPU)
    python benchmarks/nrm_semisupervised.py --step-time --datasets cifar10 --methods ce maxmin_nrm --augment
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from trinity_lightning.nrm.module import METHODS  # noqa: E402  (the NRM's named methods: NRM(method=...))

SETTINGS: dict[str, dict[str, Any]] = {
    "mnist": {
        "labels_per_class": 10,
        "layers": [32, "M", 64, "M"],
        "in_channels": 1,
        "image_size": 28,
        "steps": 1500,
        "lr": 2e-3,
    },
    "cifar10": {
        "labels_per_class": 400,
        "layers": [64, "M", 128, "M", 256, "M"],
        "in_channels": 3,
        "image_size": 32,
        "steps": 1000,
        "lr": 2e-3,
    },
}
LABELLED_BATCH, UNLABELLED_RATIO = 50, 4.0
# ``--augment``: standard CIFAR augmentation of every training batch (labelled and unlabelled), on the device
AUGMENT: dict[str, Any] = {"crop_padding": 4, "padding_mode": "reflect", "flip": True}
AUGMENTED_SUFFIX = "_aug"  # augmented runs are summarised under "<dataset>_aug", apart from the plain runs
RESULTS = ROOT / "benchmarks" / "results" / "nrm_semisupervised.json"
SEEDS_REQUIRED = 5  # maxmin_nrm_vs_ce_semisup asks for 5 paired seeds (issue 20, section 4)
AGGREGATED = ("protocol", "accuracy_percent", "reported", "repeats", "runs")  # the details aggregate() writes itself
SCALES: dict[str, dict[str, Any]] = {
    "paper": {"datasets": ["mnist", "cifar10"], "methods": list(METHODS), "seeds": [0, 1, 2, 3, 4], "steps": {}},
    "cpu": {
        "datasets": ["mnist"],
        "methods": ["ce", "two_path_ce", "maxmin_nrm"],
        "seeds": [0, 1, 2, 3, 4],
        "steps": {"mnist": 400},
        "unlabelled_limit": 10000,
        "test_limit": 5000,
    },
    "smoke": {"datasets": ["mnist"], "methods": list(METHODS), "seeds": [0], "steps": {"mnist": 30}},
    # issue 20 section 4: CIFAR-10 with 4,000 labels, a longer schedule, standard augmentation (one GPU call)
    "cifar_aug": {
        "datasets": ["cifar10"],
        "methods": ["ce", "two_path_ce", "maxmin_nrm"],
        "seeds": [0, 1, 2],
        "steps": {"cifar10": 2500},
        "augment": True,
    },
}


def paired_interval(deltas: list[float], level: float = 0.95) -> tuple[float, float]:
    """Two-sided t-interval of the mean of paired differences (``nan`` with fewer than 2 pairs).

    Example:
        >>> [round(v, 2) for v in paired_interval([1.0, 2.0, 3.0])]
        [-0.48, 4.48]
    """
    if len(deltas) < 2:
        return float("nan"), float("nan")
    from scipy import stats

    mean, sem = statistics.fmean(deltas), statistics.stdev(deltas) / len(deltas) ** 0.5
    half = float(stats.t.ppf(0.5 + level / 2, len(deltas) - 1)) * sem
    return mean - half, mean + half


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    """Train and test one (dataset, method, seed); returns a flat record."""
    import torch

    torch.set_num_threads(job.get("threads", 1))
    import lightning.pytorch as pl

    from _harness import trainer as bench_trainer
    from trinity_lightning.nrm import NRM, SemiSupervisedDataModule

    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high")
    setting, seed = SETTINGS[job["dataset"]], job["seed"]
    pl.seed_everything(seed, verbose=False)
    augment = bool(job.get("augment", False))
    dm = SemiSupervisedDataModule(
        job["dataset"],
        labels_per_class=setting["labels_per_class"],
        labelled_batch_size=LABELLED_BATCH,
        unlabelled_ratio=UNLABELLED_RATIO,
        val_size=1000,
        unlabelled_limit=job.get("unlabelled_limit"),
        test_limit=job.get("test_limit"),
        seed=seed,
        augment=augment,
        **(AUGMENT if augment else {}),
    )
    model = NRM(
        num_classes=10,
        in_channels=setting["in_channels"],
        image_size=setting["image_size"],
        layers=setting["layers"],
        lr=setting["lr"],
        schedule="cosine",
        method=job["method"],
    )
    trainer = bench_trainer(
        max_steps=job["steps"],
        max_time=job.get("max_time"),
        accelerator=job.get("accelerator", "auto"),
        devices=1,
        limit_val_batches=0,
    )
    load_start = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    start, cpu_start = time.perf_counter(), time.process_time()
    trainer.fit(model, dm)
    fit_seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    train = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train_")}
    steps_done = int(trainer.global_step)
    test_acc = float(trainer.test(model, dm, verbose=False)[0]["test_acc"])
    record = {
        **{k: job[k] for k in ("dataset", "method", "seed")},
        "test_acc": test_acc,
        "steps": steps_done,
        "steps_planned": job["steps"],
        "augment": augment,
        **({"augment_settings": AUGMENT} if augment else {}),
        "fit_seconds": round(fit_seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1),
        "threads": job.get("threads", 1),
        "unlabelled_limit": job.get("unlabelled_limit"),
        "test_limit": job.get("test_limit"),
        "num_labelled": dm.num_labelled,
        "num_unlabelled": 0 if dm.unlabelled_indices is None else len(dm.unlabelled_indices),
        "train_losses": train,
        "device": str(trainer.strategy.root_device),
        "trained_on": "gpu" if type(trainer.accelerator).__name__ == "CUDAAccelerator" else "cpu",
        "load_average_start": load_start,
    }
    if job.get("save_weights"):
        torch.save(
            {
                "hparams": dict(model.hparams),
                "state_dict": model.state_dict(),
                "labelled_indices": dm.labelled_indices.tolist() if dm.labelled_indices is not None else None,
            },
            job["save_weights"],
        )
    return record


def read_records(path: Path) -> list[dict[str, Any]]:
    """Run records from a ``runs.jsonl`` file, or from a results file's ``details.runs`` and ``details.repeats``.

    A results file's records without ``trained_on`` get it from the file's machine (``"gpu"`` when it names a
    GPU: the first runs of this benchmark were written before records said where they trained).
    """
    text = path.read_text()
    if path.suffix == ".json":
        payload = json.loads(text)
        on = "gpu" if payload.get("machine", {}).get("gpu") else "cpu"
        details = payload["details"]
        runs = details["runs"] + [r["run"] for r in details.get("repeats", [])]
        return [{"trained_on": on, **r} for r in runs]
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def group(record: dict[str, Any]) -> str:
    """The summary key of a run: its dataset, with ``_aug`` appended for an augmented run.

    Augmented runs are a different protocol: they are summarised, paired and checked for repeats apart from
    the plain runs of the same dataset (records written before ``--augment`` existed read as plain).

    Example:
        >>> group({"dataset": "cifar10"}), group({"dataset": "cifar10", "augment": True})
        ('cifar10', 'cifar10_aug')
    """
    return record["dataset"] + (AUGMENTED_SUFFIX if record.get("augment") else "")


def split_repeats(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(primary, repeats)``: the first record of each (:func:`group`, method, seed) and the later ones.

    A repeat is the same configuration run again (e.g. a GPU run re-run on the CPU to measure how much the two
    devices' numerics move a result); it is reported beside its primary, never averaged in.

    Example:
        >>> first, again = split_repeats([{"dataset": "d", "method": "m", "seed": 0, "test_acc": 0.5}] * 2)
        >>> len(first), len(again)
        (1, 1)
    """
    seen: set[tuple[str, str, int]] = set()
    primary: list[dict[str, Any]] = []
    repeats: list[dict[str, Any]] = []
    for r in records:
        key = (group(r), r["method"], int(r["seed"]))
        (repeats if key in seen else primary).append(r)
        seen.add(key)
    return primary, repeats


PAIRS_REPORTED = (  # (name, method, anchor) of the paired differences reported for an augmented protocol
    ("maxmin_nrm_minus_ce", "maxmin_nrm", "ce"),
    ("maxmin_nrm_minus_two_path_ce", "maxmin_nrm", "two_path_ce"),
    ("two_path_ce_minus_ce", "two_path_ce", "ce"),
)


def reported_summary(methods: dict[str, dict[str, Any]], paired: Any) -> dict[str, Any]:
    """A reported (not claimed) result: each method's mean +- std over seeds and the paired differences.

    ``methods`` is one dataset's summary (method -> ``mean``, ``std``, ``per_seed``, ``steps`` ...); ``paired``
    maps ``(method, anchor)`` to the paired statistics of :func:`aggregate` (``ours``, ``anchor``, ``seeds``,
    ``per_seed_delta``, ``interval95``, ``pairs``). A difference is ``delta = ours - anchor`` over the seeds
    both methods have.

    Example:
        >>> methods = {"ce": {"mean": 60.0, "std": 1.0, "per_seed": {"0": 59.0, "1": 61.0}, "steps": [5]}}
        >>> reported_summary(methods, None)["methods"]["ce"]
        {'mean': 60.0, 'std': 1.0, 'seeds': 2, 'steps': [5]}
    """
    out: dict[str, Any] = {
        "methods": {
            method: {"mean": m["mean"], "std": m["std"], "seeds": len(m["per_seed"]), "steps": m["steps"]}
            for method, m in methods.items()
        }
    }
    for name, method, anchor in PAIRS_REPORTED:
        if method in methods and anchor in methods:
            stats = paired(method, anchor)
            out[name] = {"delta": round(stats["ours"] - stats["anchor"], 3), **stats}
    return out


def aggregate(
    records: list[dict[str, Any]],
    command: str | None = None,
    note: str | dict[str, str] = "",
    extra_details: dict[str, Any] | None = None,
    results_dir: Path | None = None,
) -> Path:
    """Write ``benchmarks/results/nrm_semisupervised.json`` from run records.

    Paired claims compare two methods on the seeds both have (``ours`` and ``anchor`` are the means over those
    seeds, ``per_seed_delta`` and ``interval95`` their paired differences). Repeats of a configuration (see
    :func:`split_repeats`) go to ``details.repeats`` with their difference from the primary run.

    Claims come from the plain (non-augmented) runs only, at their lowest label count. Augmented runs (records
    with ``augment: true``, summarised under ``"<dataset>_aug"``) are reported, not claimed: ``details.reported``
    holds, per augmented dataset, each method's mean and std over seeds and the paired differences (Max-Min NRM
    minus CE, minus two-path CE, two-path CE minus CE) with their paired 95% t-intervals.
    """
    from _results import claim, write_results

    records, repeats = split_repeats(records)
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for r in records:
        table.setdefault(group(r), {}).setdefault(r["method"], {})[str(r["seed"])] = r
    summary: dict[str, Any] = {}
    for dataset, methods in table.items():
        summary[dataset] = {}
        for method, runs in methods.items():
            accs = [100 * runs[s]["test_acc"] for s in sorted(runs)]
            summary[dataset][method] = {
                "mean": round(statistics.fmean(accs), 3),
                "std": round(statistics.stdev(accs), 3) if len(accs) > 1 else 0.0,
                "per_seed": {s: round(100 * runs[s]["test_acc"], 3) for s in sorted(runs)},
                "steps": sorted({runs[s]["steps"] for s in runs}),
                "fit_seconds": [runs[s]["fit_seconds"] for s in sorted(runs)],
                "trained_on": {s: runs[s].get("trained_on", "unknown") for s in sorted(runs)},
            }
    claims: list[dict[str, Any]] = []
    # the claims are made at the lowest label count (MNIST's 100 labels in the full protocol), plain runs only
    labelled = {group(r): r["num_labelled"] for r in records}
    plain = [dataset for dataset in summary if not dataset.endswith(AUGMENTED_SUFFIX)]
    lowest = min(plain, key=lambda dataset: labelled[dataset]) if plain else ""
    s = summary.get(lowest, {})
    labels = {"mnist": "MNIST 100 labels", "cifar10": "CIFAR-10 4,000 labels"}.get(lowest, lowest)

    def paired(method: str, anchor: str, dataset: str) -> dict[str, Any]:
        """ours / anchor: means over the seeds both methods have; the paired differences and their t-interval."""
        a, b = summary[dataset][method]["per_seed"], summary[dataset][anchor]["per_seed"]
        seeds = [k for k in sorted(a, key=int) if k in b]
        deltas = [round(a[k] - b[k], 3) for k in seeds]
        low, high = paired_interval(deltas)
        where = {name: sorted({summary[dataset][name]["trained_on"][k] for k in seeds}) for name in (method, anchor)}
        return {
            "ours": round(statistics.fmean(a[k] for k in seeds), 3),
            "anchor": round(statistics.fmean(b[k] for k in seeds), 3),
            "seeds": [int(k) for k in seeds],
            "per_seed_delta": deltas,
            "interval95": [round(low, 3), round(high, 3)],
            "pairs": len(deltas),
            "trained_on": where,
        }

    def paired_claim(cid: str, what: str, method: str, anchor: str, target_delta: float) -> dict[str, Any]:
        stats = paired(method, anchor, lowest)
        ours, base = stats.pop("ours"), stats.pop("anchor")
        what = f"{what}, {labels}, mean of {stats['pairs']} paired seeds {stats['seeds']} (paired 95% t-interval"
        what += " of the per-seed differences in interval95)"
        entry = claim(cid, what, ours=ours, anchor=base, better="higher", unit="%", target_delta=target_delta)
        entry.update(stats)
        return entry

    if "maxmin_nrm" in s and "ce" in s:
        entry = paired_claim(
            "maxmin_nrm_vs_ce_semisup",
            "test accuracy, Max-Min NRM (max-min CE + reconstruction + RPN) minus the supervised single-path CE "
            f"baseline, same net, steps and labelled batches; met needs delta >= 2, the interval above 0 and "
            f"{SEEDS_REQUIRED} paired seeds (issue 20)",
            "maxmin_nrm",
            "ce",
            2.0,
        )
        entry["seeds_required"] = SEEDS_REQUIRED
        entry["met"] = bool(entry["met"] and entry["interval95"][0] > 0 and entry["pairs"] >= SEEDS_REQUIRED)
        claims.append(entry)
    if "maxmin_nrm" in s and "two_path_ce" in s:
        claims.append(
            paired_claim(
                "maxmin_nrm_vs_two_path_ce",
                "test accuracy, Max-Min NRM minus the matched two-path CE (NRM(method='two_path_ce'): the same Max "
                "and Min paths, CE on both, logits averaged, no reconstruction / RPN)",
                "maxmin_nrm",
                "two_path_ce",
                0.5,
            )
        )
    if "two_path_ce" in s and "ce" in s:
        claims.append(
            paired_claim(
                "two_path_ce_vs_ce_semisup",
                "test accuracy, two-path CE minus single-path CE (the two-path ensemble's effect alone)",
                "two_path_ce",
                "ce",
                0.0,
            )
        )
    if "maxmin_nrm" in s and "maxmin_nrm_no_rpn" in s:
        claims.append(
            claim(
                "rpn_ablation_delta",
                f"test accuracy, Max-Min NRM with RPN minus without RPN, {labels}, mean of "
                f"{len(s['maxmin_nrm']['per_seed'])} seeds",
                ours=s["maxmin_nrm"]["mean"],
                anchor=s["maxmin_nrm_no_rpn"]["mean"],
                better="higher",
                unit="%",
                target_delta=0.0,
            )
        )
    for dataset in plain:
        if dataset == lowest:
            continue
        d = summary[dataset]
        if "maxmin_nrm" in d and "ce" in d:
            claims.append(
                claim(
                    f"maxmin_nrm_vs_ce_{dataset}",
                    f"as maxmin_nrm_vs_ce_semisup on {dataset}",
                    ours=d["maxmin_nrm"]["mean"],
                    anchor=d["ce"]["mean"],
                    better="higher",
                    unit="%",
                    target_delta=0.0,
                )
            )
    settings = {  # the steps the runs were given (``--steps`` overrides the defaults)
        dataset: {**SETTINGS[dataset], "steps": max(r["steps_planned"] for r in records if group(r) == dataset)}
        for dataset in plain
    }
    for dataset in summary:
        if dataset not in settings:  # an augmented protocol: the dataset's settings, its steps and augmentation
            runs = [r for r in records if group(r) == dataset]
            base = SETTINGS[runs[0]["dataset"]]
            settings[dataset] = {
                **base,
                "steps": max(r["steps_planned"] for r in runs),
                "augment": runs[0].get("augment_settings", AUGMENT),
            }
    reported = {
        dataset: reported_summary(summary[dataset], lambda method, anchor, d=dataset: paired(method, anchor, d))
        for dataset in summary
        if dataset.endswith(AUGMENTED_SUFFIX)
    }
    primary = {(group(r), r["method"], int(r["seed"])): r for r in records}
    repeated = [
        {
            **{k: r[k] for k in ("dataset", "method", "seed")},
            **({"augment": True} if r.get("augment") else {}),
            "trained_on": [primary[key].get("trained_on", "unknown"), r.get("trained_on", "unknown")],
            "test_acc_percent": [round(100 * primary[key]["test_acc"], 3), round(100 * r["test_acc"], 3)],
            "difference_points": round(100 * (r["test_acc"] - primary[key]["test_acc"]), 3),
            "run": r,
        }
        for r in repeats
        for key in [(group(r), r["method"], int(r["seed"]))]
    ]
    details = {
        "protocol": {
            "settings": settings,
            "methods": {m: METHODS[m] for m in sorted({r["method"] for r in records}, key=list(METHODS).index)},
            "labelled_batch": LABELLED_BATCH,
            "unlabelled_ratio": UNLABELLED_RATIO,
            "optimizer": "AdamW, cosine to 0, wd 1e-4",
            "note": note,
        },
        **(extra_details or {}),
        "accuracy_percent": summary,
        **({"reported": reported} if reported else {}),
        "repeats": repeated,
        "runs": records,
    }
    return write_results(
        "nrm_semisupervised", claims, details, command=command, results_dir=results_dir, inline_number_lists=True
    )


def step_seconds(
    dataset: str, methods: list[str], augment: bool = False, steps: int = 10, warmup: int = 2
) -> dict[str, Any]:
    """Seconds per training step of each method on ``dataset``'s shapes, on this machine's CPU, 1 thread.

    A step is what ``fit`` does per batch: (with ``augment``) the crop + flip of the labelled and unlabelled
    images, ``NRM.losses``, backward and AdamW, on random images (``LABELLED_BATCH`` labelled + the
    unlabelled share). ``cpu`` is ``time.process_time``, ``wall`` ``time.perf_counter``, each the mean of
    ``steps`` steps after ``warmup``; the 1-minute load average before and after is recorded with them.
    """
    import torch

    from trinity_lightning.nrm import NRM
    from trinity_lightning.nrm.augment import random_crop_flip

    torch.set_num_threads(1)
    setting = SETTINGS[dataset]
    shape = (setting["in_channels"], setting["image_size"], setting["image_size"])
    generator = torch.Generator().manual_seed(0)
    x_l = torch.randn(LABELLED_BATCH, *shape, generator=generator)
    y_l = torch.randint(0, 10, (LABELLED_BATCH,), generator=generator)
    x_u = torch.randn(round(LABELLED_BATCH * UNLABELLED_RATIO), *shape, generator=generator)
    out: dict[str, Any] = {"dataset": dataset, "augment": augment, "steps": steps, "threads": 1, "methods": {}}
    out["load_average_before"] = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    for method in methods:
        torch.manual_seed(0)
        model = NRM(
            num_classes=10,
            in_channels=setting["in_channels"],
            image_size=setting["image_size"],
            layers=setting["layers"],
            lr=setting["lr"],
            method=method,
        )
        optimizer = torch.optim.AdamW(model.parameters(), lr=setting["lr"], weight_decay=1e-4)
        cpu = wall = 0.0
        for step in range(warmup + steps):
            start, cpu_start = time.perf_counter(), time.process_time()
            batch: dict[str, Any] = {"labelled": (x_l, y_l), "unlabelled": x_u}
            if augment:
                batch = {
                    "labelled": (random_crop_flip(x_l, **AUGMENT, generator=generator), y_l),
                    "unlabelled": random_crop_flip(x_u, **AUGMENT, generator=generator),
                }
            optimizer.zero_grad()
            model.losses(batch)["loss"].backward()
            optimizer.step()
            if step >= warmup:
                cpu += time.process_time() - cpu_start
                wall += time.perf_counter() - start
        out["methods"][method] = {"cpu": round(cpu / steps, 3), "wall": round(wall / steps, 3)}
    if augment:  # the augmentation alone, 250 images
        start = time.process_time()
        for _ in range(20):
            random_crop_flip(x_l, **AUGMENT, generator=generator), random_crop_flip(x_u, **AUGMENT, generator=generator)
        out["augment_cpu"] = round((time.process_time() - start) / 20, 4)
    out["load_average_after"] = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return out


def subsample_cifar10(out_dir: Path, per_class: int = 2000, seed: int = 0) -> Path:
    """Write ``out_dir/cifar10_jpeg/cifar10_jpeg.zip``: ``per_class`` training JPEGs per class, all test JPEGs.

    The JPEG bytes are copied, not re-encoded; the training images of each class are drawn with a seeded
    generator. Point ``TRINITY_DATA`` at ``out_dir`` to run the CIFAR-10 part on the subsample (the GPU run
    used 2,000 per class, seed 0, to fit the machine's carry limit).
    """
    import zipfile

    from trinity_lightning.data import dataset_dir

    archive = dataset_dir("cifar10_jpeg") / "cifar10_jpeg.zip"
    rng = np.random.default_rng(seed)
    target = out_dir / "cifar10_jpeg" / "cifar10_jpeg.zip"
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".jpg"))
        by_class: dict[str, list[str]] = {}
        for name in names:
            if name.startswith("train/"):
                by_class.setdefault(name.split("/")[1], []).append(name)
        if any(len(members) < per_class for members in by_class.values()):
            raise ValueError(f"per_class: {per_class} exceeds the smallest class ({min(map(len, by_class.values()))})")
        keep = {n for members in by_class.values() for n in rng.choice(members, per_class, replace=False)}
        keep |= {n for n in names if n.startswith("test/")}
        with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as out:
            for name in names:
                if name in keep:
                    out.writestr(name, z.read(name))
    return target


def figures(weights: Path | None, results: Path, img_dir: Path) -> list[Path]:
    """``docs/img/nrm_samples.png`` (renderings of the saved MNIST model; skipped without ``weights``) and
    ``nrm_semisupervised.png`` (accuracy per method from ``results``: bars the mean, filled dots GPU-trained
    seeds, open dots CPU-trained ones)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = [] if weights is None else [samples_figure(weights, img_dir)]
    summary = json.loads(results.read_text())["details"]["accuracy_percent"]
    names = {
        "ce": "CE (labelled only)",
        "two_path_ce": "two-path CE",
        "nrm": "NRM",
        "maxmin_nrm_no_rpn": "Max-Min NRM, no RPN",
        "maxmin_nrm": "Max-Min NRM",
    }
    fig, axes = plt.subplots(1, len(summary), figsize=(5.5 * len(summary), 3.4))
    for ax, (dataset, methods) in zip(np.atleast_1d(axes), sorted(summary.items(), key=lambda kv: kv[0] != "mnist")):
        keys = [k for k in names if k in methods]
        means = [methods[k]["mean"] for k in keys]
        ax.bar(range(len(keys)), means, yerr=[methods[k]["std"] for k in keys], color="#888", capsize=4)
        for i, k in enumerate(keys):
            on = methods[k].get("trained_on", {})
            for seed, acc in methods[k]["per_seed"].items():
                gpu = on.get(seed, "gpu") == "gpu"
                ax.scatter([i], [acc], s=14, zorder=3, color="k" if gpu else "none", edgecolors="k")
        ax.set_xticks(range(len(keys)), [names[k] for k in keys], rotation=15, fontsize=8)
        ax.set_ylim(min(means) - 6, max(means) + 3)
        ax.set_ylabel("test accuracy (%)")
        titles = {
            "mnist": "MNIST, 100 labels",
            "cifar10": "CIFAR-10, 4,000 labels (short)",
            "cifar10_aug": "CIFAR-10, 4,000 labels, augmented",
        }
        ax.set_title(titles.get(dataset, dataset))
    fig.tight_layout()
    path = img_dir / "nrm_semisupervised.png"
    fig.savefig(path, dpi=110)
    out.append(path)
    return out


def samples_figure(weights: Path, img_dir: Path) -> Path:
    """``docs/img/nrm_samples.png``: renderings of the saved MNIST model."""
    import torch

    from trinity_lightning.data import load_mnist
    from trinity_lightning.nrm import NRM, render_grid, save_grid

    saved = torch.load(weights, map_location="cpu", weights_only=False)
    model = NRM(**saved["hparams"])
    model.load_state_dict(saved["state_dict"])
    train, test = load_mnist("train"), load_mnist("test")
    mean, std = train.images.mean() / 255.0, train.images.std() / 255.0
    pick = [int((test.labels == c).nonzero()[0][0]) for c in range(0, 10, 1)][:8]
    references = (torch.from_numpy(test.images[pick]).float().div(255.0).unsqueeze(1) - mean) / std
    grid = render_grid(model, references, random_columns=2, seed=0)
    return save_grid(
        grid,
        img_dir / "nrm_samples.png",
        references=references,
        row_labels=[f"y={c}" for c in range(10)],
        title="Max-Min NRM (MNIST, 100 labels): class y rendered through the latents of each top image;"
        " last 2 columns: random latents",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--scale", choices=sorted(SCALES), default="paper", help="preset; the options below override it"
    )
    parser.add_argument("--datasets", nargs="+", default=None, choices=sorted(SETTINGS))
    parser.add_argument("--methods", nargs="+", default=None, choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=None)
    parser.add_argument("--steps", type=json.loads, default=None, help="per dataset, e.g. '{\"mnist\": 500}'")
    parser.add_argument(
        "--augment",
        action="store_true",
        default=None,
        help="random crop (4-pixel reflect padding) + horizontal flip of every training batch, on the device; "
        "summarised as '<dataset>_aug', apart from the plain runs",
    )
    parser.add_argument("--unlabelled-limit", type=int, default=None)
    parser.add_argument("--test-limit", type=int, default=None)
    parser.add_argument("--max-time", default=None, help="per run, Lightning's DD:HH:MM:SS")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--runs", type=Path, default=Path("/tmp/nrm_runs.jsonl"), help="run records (appended)")
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=None,
        help="write nrm_semisupervised.json here (default benchmarks/results; with --aggregate too)",
    )
    parser.add_argument(
        "--step-time",
        action="store_true",
        help="only measure CPU seconds per training step of --methods on the first of --datasets (with --augment)",
    )
    parser.add_argument("--weights", type=Path, default=None, help="save the MNIST Max-Min NRM seed-0 weights here")
    parser.add_argument(
        "--aggregate",
        type=Path,
        nargs="+",
        default=None,
        help="only rebuild the results from these run records (runs.jsonl files and/or results files)",
    )
    parser.add_argument("--note", default="")
    parser.add_argument(
        "--figures",
        type=Path,
        nargs="?",
        const=Path(),
        default=None,
        metavar="WEIGHTS",
        help="only draw the docs figures (nrm_samples.png needs WEIGHTS; without it only nrm_semisupervised.png)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny wiring check (MNIST, 30 steps, 1 seed)")
    parser.add_argument(
        "--subsample-cifar10",
        type=Path,
        default=None,
        metavar="DIR",
        help="only write DIR/cifar10_jpeg/cifar10_jpeg.zip: 2,000 training JPEGs per class (seed 0), all test JPEGs",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.scale = "smoke"
    for key, value in SCALES[args.scale].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.augment = bool(args.augment)
    if args.step_time:
        print(json.dumps(step_seconds(args.datasets[0], args.methods, args.augment, steps=10)))
        return 0
    if args.subsample_cifar10:
        print(subsample_cifar10(args.subsample_cifar10))
        return 0
    if args.figures:
        for path in figures(None if args.figures == Path() else args.figures, RESULTS, ROOT / "docs" / "img"):
            print(path)
        return 0
    if args.aggregate:
        records = [r for path in args.aggregate for r in read_records(path)]
        note: str | dict[str, str] = args.note
        extra: dict[str, Any] = {}
        for path in args.aggregate:  # a results file's notes and extra details carry over
            if path.suffix == ".json":
                details = json.loads(path.read_text())["details"]
                note = note or details.get("protocol", {}).get("note", "")
                extra.update({k: v for k, v in details.items() if k not in AGGREGATED})
        print(aggregate(records, note=note, extra_details=extra, results_dir=args.results_dir))
        return 0
    if args.quick:
        args.unlabelled_limit, args.test_limit = 2000, 1000
    if "cifar10" in args.datasets:  # decode the JPEGs once, before the workers start
        from trinity_lightning.data import load_cifar10

        load_cifar10("train"), load_cifar10("test")
    jobs = []
    for dataset in sorted(args.datasets, key=lambda d: d != "cifar10"):  # the long ones first
        for seed in args.seeds:
            for method in args.methods:
                save = None
                if args.weights and dataset == "mnist" and method == "maxmin_nrm" and seed == args.seeds[0]:
                    save = str(args.weights)
                jobs.append(
                    {
                        "dataset": dataset,
                        "method": method,
                        "seed": seed,
                        "steps": args.steps.get(dataset, SETTINGS[dataset]["steps"]),
                        "unlabelled_limit": args.unlabelled_limit,
                        "test_limit": args.test_limit,
                        "max_time": args.max_time,
                        "accelerator": args.accelerator,
                        "augment": args.augment,
                        "save_weights": save,
                    }
                )
    records = []
    args.runs.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_one, job): job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                record = future.result()
            except Exception as err:  # keep the other runs going; the failure is reported
                print(f"FAILED {job['dataset']} {job['method']} {job['seed']}: {err!r}", flush=True)
                continue
            records.append(record)
            with args.runs.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
            print(
                f"[{time.perf_counter() - start:6.1f}s] {group(record):11s} {record['method']:18s} "
                f"seed {record['seed']} acc {100 * record['test_acc']:.2f} steps {record['steps']} "
                f"({record['fit_seconds']}s)",
                flush=True,
            )
    if records and not args.quick:
        note = f"--scale {args.scale}" + (f"; {args.note}" if args.note else "")
        print(aggregate(records, note=note, results_dir=args.results_dir))
    return 0 if len(records) == len(jobs) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
