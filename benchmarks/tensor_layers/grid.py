"""The accuracy grid: dense / TRL heads / TCL + TRL heads / whole nets tensorized and fine-tuned, per seed."""

from __future__ import annotations

import argparse
import copy
import json
import math
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import BATCH, DATASETS, FT_LR, LR
from .data import _data_meta, load_arrays, to_tensors
from .training import accuracy, head_params, n_params, train


def _worker(job: dict[str, Any]) -> str:
    """One (dataset, seed, group) job; appends one JSON line per trained model to its own file.

    Groups: ``net`` (dense, dense fine-tuned, every tensorized net), ``trl-cp`` / ``trl-tucker`` / ``trl-tt`` (the TRL
    heads of one factorization), ``tcl`` (the TCL + Tucker TRL heads).
    """
    from trinity_lightning.models import SmallCNN
    from trinity_lightning.tensor import TensorHeadCNN, tensorize

    torch.set_num_threads(1)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    device = torch.device(job["device"])
    cfg = DATASETS[job["dataset"]]
    arrays = load_arrays(job["source"], job["dataset"], job["train_limit"], job["test_limit"])
    data = to_tensors(arrays, device)
    epochs, ft_epochs, seed = job["epochs"] or cfg["epochs"], job["ft_epochs"], job["seed"]
    out = Path(job["out"]) / f"{job['dataset']}_{seed}_{job['group']}.jsonl"
    base = {"dataset": job["dataset"], "seed": seed}

    def emit(**record: Any) -> None:
        with out.open("a") as handle:
            handle.write(json.dumps({**base, **record}) + "\n")

    def build(**kw: Any) -> nn.Module:
        torch.manual_seed(seed)
        common = dict(
            in_channels=cfg["in_channels"], num_classes=10, channels=cfg["channels"], image_size=cfg["image_size"]
        )
        return (TensorHeadCNN(**common, **kw) if kw else SmallCNN(**common)).to(device)

    if job["group"] == "net":
        start = time.perf_counter()
        dense = train(build(), data, epochs, LR, seed, cfg["augment"])
        emit(
            method="dense",
            factorization=None,
            rank=None,
            acc=accuracy(dense, data),
            params=n_params(dense),
            head_params=head_params(dense),
            seconds=time.perf_counter() - start,
        )
        start = time.perf_counter()
        dense_ft = train(copy.deepcopy(dense), data, ft_epochs, FT_LR, seed + 100, cfg["augment"])
        emit(
            method="dense_ft",
            factorization=None,
            rank=None,
            acc=accuracy(dense_ft, data),
            params=n_params(dense_ft),
            head_params=head_params(dense_ft),
            seconds=time.perf_counter() - start,
        )
        for rank in job["net_ranks"]:
            for fact in job["net_factorizations"]:
                start = time.perf_counter()
                model = copy.deepcopy(dense)
                report = tensorize(model, fact, rank, min_params=1000)  # the RGB/gray input conv stays dense
                before_ft = accuracy(model, data)
                train(model, data, ft_epochs, FT_LR, seed + 100, cfg["augment"])
                emit(
                    method="tensorized",
                    factorization=fact,
                    rank=rank,
                    acc=accuracy(model, data),
                    acc_before_ft=before_ft,
                    params=n_params(model),
                    head_params=head_params(model),
                    layer_errors={r.name: round(r.reconstruction_error, 4) for r in report.layers},
                    seconds=time.perf_counter() - start,
                )
    elif job["group"].startswith("trl-"):  # one job per factorization, so a pool of workers balances
        fact = job["group"].split("-", 1)[1]
        for rank in job["trl_ranks"]:
            start = time.perf_counter()
            model = train(build(head="trl", factorization=fact, rank=rank), data, epochs, LR, seed, cfg["augment"])
            emit(
                method="trl",
                factorization=fact,
                rank=rank,
                acc=accuracy(model, data),
                params=n_params(model),
                head_params=head_params(model),
                seconds=time.perf_counter() - start,
            )
    else:
        for rank in job["tcl_trl_ranks"]:
            start = time.perf_counter()
            model = train(
                build(head="tcl+trl", factorization="tucker", rank=rank, tcl_shape=0.5),
                data,
                epochs,
                LR,
                seed,
                cfg["augment"],
            )
            emit(
                method="tcl+trl",
                factorization="tucker",
                rank=rank,
                acc=accuracy(model, data),
                params=n_params(model),
                head_params=head_params(model),
                seconds=time.perf_counter() - start,
            )
    return str(out)


def _job_cost(job: dict[str, Any]) -> float:
    """Rough training steps of a job (epochs x batches), to start the longest jobs first."""
    cfg = DATASETS[job["dataset"]]
    epochs = job["epochs"] or cfg["epochs"]
    n = job["train_limit"] or {"cifar10": 15000, "fashion_mnist": 20000}[job["dataset"]]
    if job["group"] == "net":
        runs = epochs + job["ft_epochs"] * (1 + len(job["net_ranks"]) * len(job["net_factorizations"]))
    else:
        runs = epochs * len(job["tcl_trl_ranks"] if job["group"] == "tcl" else job["trl_ranks"])
    return runs * math.ceil(n / BATCH)


def run_grid(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.jsonl"):  # records are appended: a re-run into the same folder must not mix in old ones
        stale.unlink()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    groups = [g for group in args.groups for g in (["net"] if group == "net" else args.head_groups)]
    jobs = [
        {
            "dataset": ds,
            "seed": seed,
            "group": group,
            "device": device,
            "source": args.data,
            "train_limit": args.train_limit,
            "test_limit": args.test_limit,
            "epochs": args.epochs,
            "ft_epochs": args.ft_epochs,
            "out": str(out),
            "net_factorizations": args.net_factorizations,
            "trl_ranks": args.trl_ranks,
            "tcl_trl_ranks": args.tcl_trl_ranks,
            "net_ranks": args.net_ranks,
        }
        for seed in (args.seed_list if args.seed_list is not None else range(args.seeds))
        for ds in args.datasets
        for group in groups
    ]
    jobs.sort(key=_job_cost, reverse=True)
    start = time.perf_counter()
    error: BaseException | None = None
    finished = True
    if args.workers == 0:  # in this process, in order (tests, debugging); --budget is checked between jobs
        for job in jobs:
            if time.perf_counter() - start > args.budget:
                finished = False
                break
            _worker(job)
    else:
        pool = mp.get_context("spawn").Pool(args.workers)
        pending = pool.map_async(_worker, jobs, chunksize=1)
        pending.wait(timeout=args.budget)
        finished = pending.ready()
        pool.terminate()
        if finished and not pending.successful():
            try:
                pending.get()
            except Exception as exc:  # written to grid.json first, re-raised below
                error = exc
    records = [json.loads(line) for f in sorted(out.glob("*.jsonl")) for line in f.read_text().splitlines()]
    meta = {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "seconds": time.perf_counter() - start,
        "complete": finished and error is None,
        "error": repr(error) if error else None,
        "budget": args.budget,
        "argv": " ".join(sys.argv[1:]),
        "workers": args.workers,
        "source": args.data,
        "data_meta": _data_meta(args.data),
        "train_limit": args.train_limit,
        "test_limit": args.test_limit,
        "epochs": {ds: args.epochs or DATASETS[ds]["epochs"] for ds in args.datasets},
        "ft_epochs": args.ft_epochs,
        "seeds": args.seed_list if args.seed_list is not None else args.seeds,
        "datasets": args.datasets,
        "tucker_linear_fixed": True,
        "trl_ranks": args.trl_ranks,
        "tcl_trl_ranks": args.tcl_trl_ranks,
        "net_ranks": args.net_ranks,
        "net_factorizations": args.net_factorizations,
        "head_groups": args.head_groups,
    }
    (out / "grid.json").write_text(json.dumps({"meta": meta, "records": records}, indent=1))
    print(f"{len(records)} records in {meta['seconds']:.0f}s, complete={meta['complete']}: {out / 'grid.json'}")
    if error is not None:
        raise error
