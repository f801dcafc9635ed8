"""Dawid-Skene over an annotation table sharded across processes (gloo) vs one process, on a synthetic table.

    python benchmarks/crowd_distributed.py                        # 10M annotations, 20 EM iterations (CPU)
    python benchmarks/crowd_distributed.py --annotations 1000000  # smoke run
    python benchmarks/crowd_distributed.py --annotations 100000000 --single-gpu   # one lent GPU (see below)

Data: ``annotations / 10`` items x 10 labels each from 1,000 workers, 5 classes; worker accuracy ~ Beta(4, 2),
wrong labels uniform. Rows are generated in blocks of 100k items from per-block seeds, so every run (one process or
several) sees the same rows; the row list is cut into equal contiguous shards, which splits the item at each cut
across two ranks. Each process uses 1 torch thread (OMP_NUM_THREADS=1), float64 (``--dtype``; in float32 the
log-likelihood's rounding noise stops EM at ``tol=0`` after a varying number of iterations, which would make the
times incomparable), at most ``--iters`` EM iterations (``tol=0``: until the log-likelihood stops rising; the
iteration counts are in ``details`` and must agree).

Timed: the fit (``fit(table)`` or ``fit(shard, process_group=True)``; tables are built before the clock starts,
their build time is in ``details``), one repeat per configuration: 1 process x 1 thread, 1 process x 2 threads,
``--world`` processes x 1 thread. The sharded result is compared with the single-process one (max |difference| of
``errors_`` and ``priors_``; tests/crowd/test_distributed_em.py asks for 1e-10 on a small table). Wall times on a shared machine depend on its load: ``details`` records the load average before and
after and each run's CPU time.

``--single-gpu`` (one GPU, e.g. the lent H200): NCCL cannot put two ranks on one GPU, so this mode times, on the
same table built once (blocks generated in parallel processes): the fit on the CPU with every core (the anchor),
the fit on the GPU (float64, after one warm-up fit), and the fit through the sharded code path over a world-size-1
NCCL group (every statistic all-reduced through NCCL), and checks that the three agree. It writes
``benchmarks/results/<--out>_gpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).parent))
from _results import claim, write_results
from trinity_lightning.crowd import DawidSkene
from trinity_lightning.crowd.table import AnnotationTable

LABELS_PER_ITEM, WORKERS, CLASSES, BLOCK = 10, 1000, 5, 100_000


def _block(b: int, num_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of items ``[b * BLOCK, ...)``: item, worker, label (10 distinct workers per item)."""
    accuracy = np.random.default_rng(12345).beta(4, 2, WORKERS)
    rng = np.random.default_rng(b)
    start, stop = b * BLOCK, min((b + 1) * BLOCK, num_items)
    n = stop - start
    truth = rng.integers(0, CLASSES, n)
    workers = (rng.integers(0, WORKERS, n)[:, None] + 97 * np.arange(LABELS_PER_ITEM)) % WORKERS  # distinct
    right = rng.random((n, LABELS_PER_ITEM)) < accuracy[workers]
    labels = np.where(right, truth[:, None], rng.integers(0, CLASSES, (n, LABELS_PER_ITEM)))
    items = np.repeat(np.arange(start, stop), LABELS_PER_ITEM)
    return items, workers.reshape(-1), labels.reshape(-1)


def _block_star(job: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _block(*job)


def rows(first: int, last: int, num_items: int, processes: int = 1) -> AnnotationTable:
    """Annotation rows ``[first, last)`` of the synthetic table, as a table of their items (blocks generated in
    ``processes`` forked processes when more than 1; the rows do not depend on it)."""
    lo, hi = first // LABELS_PER_ITEM // BLOCK, (last - 1) // LABELS_PER_ITEM // BLOCK
    jobs = [(b, num_items) for b in range(lo, hi + 1)]
    if processes > 1:
        with mp.get_context("fork").Pool(processes) as pool:
            parts = pool.map(_block_star, jobs, chunksize=1)
    else:
        parts = [_block(*job) for job in jobs]
    offset = lo * BLOCK * LABELS_PER_ITEM
    items, workers, labels = (np.concatenate(p)[first - offset : last - offset] for p in zip(*parts, strict=True))
    local = items - items[0]
    return AnnotationTable(
        torch.from_numpy(local),
        torch.from_numpy(workers.astype(np.int64)),
        torch.from_numpy(labels.astype(np.int64)),
        pd.Index(np.arange(items[0], items[-1] + 1)),
        pd.Index(np.arange(WORKERS)),
        list(range(CLASSES)),
        source="<synthetic>",
    )


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _model(args: argparse.Namespace, threads: int) -> DawidSkene:
    return DawidSkene(n_iter=args.iters, tol=0.0, threads=threads, device=args.device, dtype=args.dtype)


def _rank(rank: int, world: int, port: int, out: str, args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if args.device == "cuda":
        torch.cuda.set_device(rank % torch.cuda.device_count())
    dist.init_process_group(args.backend, rank=rank, world_size=world, timeout=timedelta(minutes=20))
    total = args.annotations
    start = time.perf_counter()
    shard = rows(rank * total // world, (rank + 1) * total // world, total // LABELS_PER_ITEM)
    build = time.perf_counter() - start
    dist.barrier()
    cpu, start = _cpu(), time.perf_counter()
    model = _model(args, 1).fit(shard, process_group=True)
    dist.barrier()
    report = {
        "fit_s": time.perf_counter() - start,
        "cpu_s": _cpu() - cpu,
        "build_s": build,
        "rows": len(shard),
        "errors": model.errors_.cpu(),
        "priors": model.priors_.cpu(),
        "n_iter": model.n_iter_,
    }
    torch.save(report, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


def sharded(args: argparse.Namespace) -> list[dict[str, Any]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    with tempfile.TemporaryDirectory() as out:
        mp.start_processes(_rank, args=(args.world, port, out, args), nprocs=args.world, start_method="spawn")
        return [torch.load(Path(out) / f"rank{r}.pt", weights_only=False) for r in range(args.world)]


def _timed_fit(model: DawidSkene, table: AnnotationTable, **kwargs: Any) -> tuple[DawidSkene, float]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    model.fit(table, **kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return model, time.perf_counter() - start


def single_gpu(args: argparse.Namespace) -> None:
    """CPU (every core) vs GPU vs world-size-1 NCCL sharded fit of one table (see the module docstring)."""
    load_before = list(os.getloadavg())
    cores = os.cpu_count() or 1
    total = args.annotations
    start = time.perf_counter()
    table = rows(0, total, total // LABELS_PER_ITEM, processes=cores)
    build = time.perf_counter() - start
    print(f"table of {total:,} rows built in {build:.1f} s on {cores} processes", flush=True)
    report: dict[str, Any] = {}
    cpu_threads = torch.get_num_threads()
    cpu_model, cpu_s = _timed_fit(
        DawidSkene(n_iter=args.iters, tol=0.0, threads=cpu_threads, device="cpu", dtype=args.dtype), table
    )
    report["cpu"] = {"fit_s": cpu_s, "threads": cpu_threads, "n_iter": cpu_model.n_iter_}
    print(f"CPU fit ({cpu_threads} threads): {cpu_s:.2f} s", flush=True)

    # without a GPU (a wiring check here) the same steps run on the CPU over gloo
    device, backend = ("cuda", "nccl") if torch.cuda.is_available() else ("cpu", "gloo")

    def gpu_model() -> DawidSkene:
        return DawidSkene(n_iter=args.iters, tol=0.0, device=device, dtype=args.dtype)

    gpu_times = []
    for _ in range(3):  # the first includes CUDA start-up and the host-to-device copy's first allocation
        model, seconds = _timed_fit(gpu_model(), table)
        gpu_times.append(seconds)
    report["gpu"] = {
        "fit_s_each": gpu_times,
        "fit_s": statistics.median(gpu_times[1:]),
        "n_iter": model.n_iter_,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
    }
    print(f"GPU fits: {gpu_times}", flush=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(s.getsockname()[1]))
    if device == "cuda":
        torch.cuda.set_device(0)
    dist.init_process_group(backend, rank=0, world_size=1, timeout=timedelta(minutes=20))
    sharded_model, sharded_s = _timed_fit(gpu_model(), table, process_group=True)
    dist.destroy_process_group()
    report["nccl_world1_sharded"] = {"fit_s": sharded_s, "n_iter": sharded_model.n_iter_}
    print(f"{backend} world-1 sharded fit: {sharded_s:.2f} s", flush=True)

    def diff(a: DawidSkene, b: DawidSkene) -> dict[str, float]:
        return {
            "errors": float((a.errors_.cpu() - b.errors_.cpu()).abs().max()),
            "priors": float((a.priors_.cpu() - b.priors_.cpu()).abs().max()),
        }

    gpu_name = torch.cuda.get_device_name(0) if device == "cuda" else "none: CPU wiring check"
    what = f"Dawid-Skene fit, {total:,} annotations ({total // LABELS_PER_ITEM:,} items, {WORKERS:,} workers, "
    what += f"{CLASSES} classes), {args.iters} EM iterations, {args.dtype}"
    claims = [
        claim(
            "ds_fit_100m_gpu_vs_cpu" if total == 100_000_000 else f"ds_fit_gpu_vs_cpu_{total}",
            f"{what}: one GPU ({gpu_name}, median of fits 2-3) vs the CPU with "
            f"{cpu_threads} threads on the same machine",
            ours=report["gpu"]["fit_s"],
            anchor=cpu_s,
            unit="s",
            better="lower",
        )
    ]
    details = {
        "annotations": total,
        "items": total // LABELS_PER_ITEM,
        "workers": WORKERS,
        "classes": CLASSES,
        "em_iterations": args.iters,
        "dtype": args.dtype,
        "device": gpu_name,
        "torch": torch.__version__,
        "cpu_cores": cores,
        "table_build_s": build,
        "fits": report,
        "max_abs_diff_gpu_vs_cpu": diff(model, cpu_model),
        "max_abs_diff_nccl_sharded_vs_gpu": diff(sharded_model, model),
        "same_iterations": len({cpu_model.n_iter_, model.n_iter_, sharded_model.n_iter_}) == 1,
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "note": "NCCL refuses two ranks on one GPU, so the sharded path runs over a world-size-1 NCCL group "
        "(every sufficient statistic still goes through NCCL all-reduce); several GPUs were not lent",
    }
    print(json.dumps(details, indent=1), flush=True)
    path = write_results(f"{args.out}_gpu", claims, details, results_dir=args.results_dir)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotations", type=int, default=10_000_000)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--backend", default="gloo")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--out", default="crowd_distributed", help="results name (benchmarks/results/<out>.json)")
    parser.add_argument("--single-gpu", action="store_true", help="CPU vs GPU vs world-1 NCCL on one GPU")
    parser.add_argument("--results-dir", type=Path, default=None, help="where the results file goes")
    args = parser.parse_args()
    if args.single_gpu:
        single_gpu(args)
        return
    load_before = list(os.getloadavg())
    total = args.annotations
    start = time.perf_counter()
    table = rows(0, total, total // LABELS_PER_ITEM)
    build = time.perf_counter() - start
    single: dict[str, dict[str, float]] = {}
    reference = None
    for threads in (1, 2):
        cpu, start = _cpu(), time.perf_counter()
        model = _model(args, threads).fit(table)
        single[f"1x{threads}"] = {"fit_s": time.perf_counter() - start, "cpu_s": _cpu() - cpu, "n_iter": model.n_iter_}
        if reference is None:
            reference = model
        print(f"1 process x {threads} thread(s): {single[f'1x{threads}']}", flush=True)
    assert reference is not None
    del table
    ranks = sharded(args)
    wall = max(r["fit_s"] for r in ranks)
    print(f"{args.world} processes x 1 thread: {wall:.2f} s", flush=True)
    errors_diff = max(float((r["errors"] - reference.errors_.cpu()).abs().max()) for r in ranks)
    priors_diff = max(float((r["priors"] - reference.priors_.cpu()).abs().max()) for r in ranks)
    one = single["1x1"]["fit_s"]
    iterations = {single["1x1"]["n_iter"], *(r["n_iter"] for r in ranks)}
    if len(iterations) > 1:
        print(f"warning: the runs made different numbers of EM iterations {iterations}", flush=True)
    what = f"Dawid-Skene fit, {total:,} annotations, {args.iters} EM iterations, {args.world} {args.backend} processes"
    claims = [
        claim(
            "ds_sharded_fit_speedup",
            f"{what} x 1 thread vs 1 process x 1 thread (one repeat each)",
            ours=wall,
            anchor=one,
            unit="s",
            better="lower",
        )
    ]
    details = {
        "annotations": total,
        "items": total // LABELS_PER_ITEM,
        "workers": WORKERS,
        "classes": CLASSES,
        "em_iterations": args.iters,
        "dtype": args.dtype,
        "device": args.device,
        "backend": args.backend,
        "world": args.world,
        "single_process": single,
        "sharded": [{k: r[k] for k in ("fit_s", "cpu_s", "build_s", "rows", "n_iter")} for r in ranks],
        "table_build_s_single": build,
        "max_abs_diff_errors": errors_diff,
        "max_abs_diff_priors": priors_diff,
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "same_iterations": len(iterations) == 1,
        "note": "each configuration timed once; on a shared machine the load decides the ratio (see load_average_*)",
    }
    path = write_results(args.out, claims, details)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
