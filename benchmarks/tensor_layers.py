"""Tensor heads and tensorized networks: accuracy vs parameters, CPU latency, lines of code vs tltorch by hand.

Four modes, run where each fits (CPU is scarce here; the accuracy grid runs on a lent GPU machine):

    # the grid's data: seeded, class-stratified subsets of CIFAR-10 and Fashion-MNIST in one .npz (+ the
    # tensorly / tensorly-torch wheels the GPU machine lacks); .device_data/ is git-ignored, `run` carries it
    python benchmarks/tensor_layers.py prepare --out .device_data/tensor/bench_data.npz --wheels .device_data/tensor/wheels
    # accuracy grid (dense / TRL head / TCL+TRL head / whole net tensorized + fine-tuned), 3 seeds
    bash benchmarks/tensor_layers_device.sh                                  # on the GPU machine (see the script)
    python benchmarks/tensor_layers.py grid --data .device_data/tensor/bench_data.npz --out /tmp/tensor_grid
    # the grid behind the stored claims, sized for a 2-core CPU (CIFAR-10 ~95 min, Fashion-MNIST ~50 min): TRL heads
    # CP/Tucker at 10%-100% of the dense head, whole nets CP/Tucker/TT at 33%-75%, no TCL, 3 seeds
    python benchmarks/tensor_layers.py grid --data .device_data/tensor/bench_data.npz --out /tmp/cpu_grid/cifar \
        --datasets cifar10 --workers 2 --budget 5400 --head-groups trl-cp trl-tucker --trl-ranks 0.1 0.25 0.5 1.0 \
        --net-ranks 0.33 0.5 0.75        # then the same with --datasets fashion_mnist --out /tmp/cpu_grid/fmnist
    python benchmarks/tensor_layers.py report --grid /tmp/cpu_grid/cifar/grid.json /tmp/cpu_grid/fmnist/grid.json \
        --latency benchmarks/results/tensor_layers.json --keep-from benchmarks/results/tensor_layers.json
    # CPU latency, dense vs tensorized, batch 1 and 256 (interleaved, median of repeats)
    python benchmarks/tensor_layers.py latency --out /tmp/tensor_latency
    # claims + plot: benchmarks/results/tensor_layers.json, docs/img/tensor_tradeoff.png (the latency may be
    # read from a results file's details.latency: --latency benchmarks/results/tensor_layers.json)
    python benchmarks/tensor_layers.py report --grid /tmp/tensor_grid/grid.json --latency /tmp/tensor_latency/latency.json
    # recompute the claims from the committed results file alone (its details hold the per-config summaries)
    python benchmarks/tensor_layers.py report --from-results benchmarks/results/tensor_layers.json
"""

from __future__ import annotations

import argparse
import ast
import copy
import inspect
import json
import math
import multiprocessing as mp
import os
import statistics
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

DATASETS: dict[str, dict[str, Any]] = {
    # channels / epochs chosen so the dense CNN is a reasonable small baseline and the grid fits the GPU allowance
    "cifar10": {"channels": (32, 64, 128), "image_size": 32, "in_channels": 3, "epochs": 12, "augment": True},
    "fashion_mnist": {"channels": (32, 64), "image_size": 28, "in_channels": 1, "epochs": 6, "augment": False},
}
FACTORIZATIONS = ("cp", "tucker", "tt")
# Rank lists that bracket the iso-accuracy point: from ~35x fewer head weights down to the dense head's count (TRL
# rank 1.0 = 1.0-1.2x), and from ~10x fewer network parameters down to 1.33x (net rank 0.75). The stored H100 grid of
# 2026-11-25 used TRL (0.01, 0.03, 0.1), TCL+TRL (0.05, 0.15, 0.5), net (0.1, 0.2, 0.33): its least compressed TRL
# head was already 10x smaller than the dense one and its least compressed net 3x, so it could only bound the claims.
TRL_RANKS = (0.03, 0.1, 0.2, 0.4, 0.7, 1.0)  # fraction of the dense head's weights
TCL_TRL_RANKS = (0.15, 0.5, 1.0)  # TRL fraction after a TCL halving every mode
NET_RANKS = (0.1, 0.2, 0.33, 0.5, 0.75)  # per-layer fraction for the whole-network tensorization
# `prepare`: training / test images per class drawn for the grid's .npz (what the stored grid used: CIFAR-10 15,000 /
# 3,000 and Fashion-MNIST 20,000 / 5,000 images; that its draw was stratified per class and used seed 0 is inferred,
# see prepare_data)
SUBSET_PER_CLASS = {"cifar10": (1500, 300), "fashion_mnist": (2000, 500)}
SUBSET_SEED = 0
LR, FT_LR, BATCH = 2e-3, 5e-4, 256


# ----------------------------------------------------------------------------------------------- data
def _stratified(labels: np.ndarray, per_class: int, rng: np.random.Generator, name: str) -> np.ndarray:
    """``per_class`` indices of each class, drawn without replacement, sorted, concatenated in class order."""
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if per_class > len(idx):
            raise ValueError(f"{name}: {per_class} images per class asked, class {c} has {len(idx)}")
        keep.append(np.sort(rng.choice(idx, per_class, replace=False)))
    return np.concatenate(keep)


def _cifar10_jpeg_bytes(split: str) -> list[bytes]:
    """The JPEG bytes of a CIFAR-10 split, in the order ``trinity_lightning.data.load_cifar10`` decodes them."""
    import zipfile

    from trinity_lightning.data import dataset_dir

    with zipfile.ZipFile(dataset_dir("cifar10_jpeg") / "cifar10_jpeg.zip") as z:
        names = sorted(n for n in z.namelist() if n.startswith(split + "/") and n.endswith(".jpg"))
        return [z.read(n) for n in names]


def _decode_jpegs(buffer: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 images from JPEGs stored back to back (``offsets``: N + 1 byte positions)."""
    import io

    from PIL import Image

    data = buffer.tobytes()
    return np.stack(
        [
            np.asarray(Image.open(io.BytesIO(data[a:b])).convert("RGB"))
            for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())
        ]
    )


def prepare_data(
    out: Path, per_class: dict[str, tuple[int, int]] | None = None, seed: int = SUBSET_SEED
) -> dict[str, Any]:
    """Write the grid's ``.npz``: class-stratified seeded subsets of each dataset, read by ``grid --data out``.

    Keys ``{dataset}_{train,test}_y`` (``int64`` labels) and the images, each split in class order: Fashion-MNIST
    as ``{dataset}_{split}_x`` (``uint8``, as ``trinity_lightning.data.load_fashion_mnist`` returns them); CIFAR-10 as
    its original JPEG bytes back to back (``cifar10_{split}_jpeg`` + ``cifar10_{split}_jpeg_offsets``), which
    :func:`load_arrays` decodes to exactly the pixels ``load_cifar10`` returns (checked here) at a third of the
    size of the compressed pixels, so the file plus the wheels fit the device machine's 64 MiB carry limit. Plus
    ``meta`` (a JSON string: sizes, seed, recipe). The draw of split ``s`` of dataset ``d`` uses
    ``np.random.default_rng((seed, i_d, i_s))`` (``i`` = position in ``DATASETS`` / ``("train", "test")``), so it
    does not depend on which other datasets are prepared.

    The stored grid read such a file that no script wrote: its sizes (CIFAR-10 15,000 / 3,000, Fashion-MNIST
    20,000 / 5,000) are recorded in docs/tensor.md, and ``load_arrays``' comment says it was in class order; that it
    was stratified with seed 0 is a guess, so this file is not guaranteed to hold the same images.
    """
    from trinity_lightning.data import load_cifar10, load_fashion_mnist

    per_class = per_class or dict(SUBSET_PER_CLASS)
    loaders = {"cifar10": load_cifar10, "fashion_mnist": load_fashion_mnist}
    arrays: dict[str, np.ndarray] = {}
    sizes: dict[str, dict[str, int]] = {}
    for dataset, counts in per_class.items():
        if dataset not in DATASETS:
            raise ValueError(f"sizes: unknown dataset {dataset!r}, expected one of {list(DATASETS)}")
        sizes[dataset] = {}
        for i_split, (split, n) in enumerate(zip(("train", "test"), counts)):
            full = loaders[dataset](split)
            rng = np.random.default_rng((seed, list(DATASETS).index(dataset), i_split))
            keep = _stratified(full.labels, n, rng, f"sizes[{dataset}][{split}]")
            arrays[f"{dataset}_{split}_y"] = full.labels[keep].astype(np.int64)
            if dataset == "cifar10":
                jpegs = _cifar10_jpeg_bytes(split)
                assert len(jpegs) == len(full.labels), "the zip changed since load_cifar10 cached it"
                chosen = [jpegs[i] for i in keep]
                offsets = np.concatenate([[0], np.cumsum([len(b) for b in chosen])]).astype(np.int64)
                buffer = np.frombuffer(b"".join(chosen), dtype=np.uint8)
                if not np.array_equal(_decode_jpegs(buffer, offsets), full.images[keep]):
                    raise RuntimeError(f"cifar10 {split}: stored JPEGs do not decode to load_cifar10's pixels")
                arrays[f"{dataset}_{split}_jpeg"], arrays[f"{dataset}_{split}_jpeg_offsets"] = buffer, offsets
            else:
                arrays[f"{dataset}_{split}_x"] = np.ascontiguousarray(full.images[keep])
            sizes[dataset][split] = len(keep)
    meta = {
        "recipe": "class-stratified draw without replacement, per split: np.random.default_rng((seed, "
        "dataset index, split index)); indices sorted within a class, classes in label order; CIFAR-10 kept as "
        "its JPEG bytes",
        "seed": seed,
        "per_class": {ds: {"train": c[0], "test": c[1]} for ds, c in per_class.items()},
        "sizes": sizes,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez_compressed(tmp, meta=np.array(json.dumps(meta)), **arrays)  # type: ignore[arg-type]  # numpy stubs
    os.replace(tmp, out)
    return {**meta, "path": str(out), "bytes": out.stat().st_size}


def download_wheels(target: Path) -> list[str]:
    """Fetch the tensorly and tensorly-torch wheels (the versions installed here) that the GPU image lacks."""
    import subprocess
    from importlib.metadata import version

    target.mkdir(parents=True, exist_ok=True)
    pins = [f"{name}=={version(name)}" for name in ("tensorly", "tensorly-torch")]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.12",
            "-d",
            str(target),
            *pins,
        ],
        check=True,
    )
    return sorted(p.name for p in target.glob("*.whl"))


def _data_meta(source: str) -> dict[str, Any] | None:
    """The ``meta`` that :func:`prepare_data` stored in an ``.npz`` (``None`` for shared data or older files)."""
    if source == "shared":
        return None
    with np.load(source) as d:
        return json.loads(str(d["meta"])) if "meta" in d.files else None


def load_arrays(source: str, dataset: str, train_limit: int | None, test_limit: int | None) -> dict[str, np.ndarray]:
    if source == "shared":
        from trinity_lightning.data import load_cifar10, load_fashion_mnist

        loader = load_cifar10 if dataset == "cifar10" else load_fashion_mnist
        rng = np.random.default_rng(0)
        out = {}
        for split, limit in (("train", train_limit), ("test", test_limit)):
            arrays = loader(split)
            keep = np.sort(rng.permutation(len(arrays.labels))[:limit]) if limit else np.arange(len(arrays.labels))
            out[f"{split}_x"], out[f"{split}_y"] = arrays.images[keep], arrays.labels[keep]
        return out
    with np.load(source) as d:
        out = {k.split(dataset + "_", 1)[1]: d[k] for k in d.files if k.startswith(dataset + "_")}
    if not out:
        raise ValueError(f"data: {source} holds no {dataset}_* arrays; write it with `prepare --sizes {dataset}=...`")
    for split in ("train", "test"):
        if f"{split}_jpeg" in out:  # written by prepare_data: JPEG bytes back to back
            out[f"{split}_x"] = _decode_jpegs(out.pop(f"{split}_jpeg"), out.pop(f"{split}_jpeg_offsets"))
    rng = np.random.default_rng(0)
    for split, limit in (("train", train_limit), ("test", test_limit)):
        if limit:  # stored subsets are in class order: sample, don't slice
            keep = rng.permutation(len(out[f"{split}_y"]))[:limit]
            out[f"{split}_x"], out[f"{split}_y"] = out[f"{split}_x"][keep], out[f"{split}_y"][keep]
    return out


def to_tensors(arrays: dict[str, np.ndarray], device: torch.device) -> tuple[torch.Tensor, ...]:
    def prep(x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(x).float().div_(255.0)
        return t.permute(0, 3, 1, 2).contiguous() if t.ndim == 4 else t.unsqueeze(1)

    xtr, xte = prep(arrays["train_x"]), prep(arrays["test_x"])
    mean, std = xtr.mean(dim=(0, 2, 3), keepdim=True), xtr.std(dim=(0, 2, 3), keepdim=True)
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    ytr, yte = torch.from_numpy(arrays["train_y"]).long(), torch.from_numpy(arrays["test_y"]).long()
    return xtr.to(device), ytr.to(device), xte.to(device), yte.to(device)


# ----------------------------------------------------------------------------------------------- training
def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def head_params(model: nn.Module) -> int:
    return n_params(model.head)  # type: ignore[arg-type]


def train(
    model: nn.Module, data: tuple[torch.Tensor, ...], epochs: int, lr: float, seed: int, augment: bool
) -> nn.Module:
    xtr, ytr = data[0], data[1]
    gen = torch.Generator(device="cpu").manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    steps = epochs * math.ceil(len(ytr) / BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(ytr), generator=gen).to(xtr.device)
        for i in range(0, len(ytr), BATCH):
            idx = order[i : i + BATCH]
            x, y = xtr[idx], ytr[idx]
            if augment:  # horizontal flip per image + one random 4-px shift per batch (cheap on GPU)
                flip = torch.rand(len(idx), device=x.device) < 0.5
                x = torch.where(flip[:, None, None, None], x.flip(3), x)
                dx, dy = (int(v) for v in torch.randint(-4, 5, (2,), generator=gen))
                x = torch.roll(nn.functional.pad(x, (4, 4, 4, 4)), (dy, dx), (2, 3))[:, :, 4:-4, 4:-4]
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            sched.step()
    return model


@torch.no_grad()
def accuracy(model: nn.Module, data: tuple[torch.Tensor, ...]) -> float:
    model.eval()
    xte, yte = data[2], data[3]
    correct = sum(
        int((model(xte[i : i + 1000]).argmax(1) == yte[i : i + 1000]).sum()) for i in range(0, len(yte), 1000)
    )
    return correct / len(yte)


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


HEAD_GROUPS = (*(f"trl-{f}" for f in FACTORIZATIONS), "tcl")


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


# ----------------------------------------------------------------------------------------------- latency
def _median_ms(model: nn.Module, x: torch.Tensor, repeats: int) -> float:
    times = []
    with torch.inference_mode():
        model(x)
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def run_latency(args: argparse.Namespace) -> None:
    from trinity_lightning.models import SmallCNN
    from trinity_lightning.tensor import TensorHeadCNN, tensorize

    torch.set_num_threads(args.threads)
    cfg = DATASETS["cifar10"]
    common = dict(in_channels=3, num_classes=10, channels=cfg["channels"], image_size=32)
    torch.manual_seed(0)
    models: dict[str, nn.Module] = {"dense": SmallCNN(**common)}
    for fact in FACTORIZATIONS:
        model = copy.deepcopy(models["dense"])
        tensorize(model, fact, args.rank, min_params=1000)
        models[f"tensorized_{fact}"] = model
    models["trl_tucker"] = TensorHeadCNN(**common, head="trl", factorization="tucker", rank=0.03)
    for m in models.values():
        m.eval()
    results: dict[str, dict[str, list[float]]] = {name: {"1": [], "256": []} for name in models}
    inputs = {"1": torch.randn(1, 3, 32, 32), "256": torch.randn(256, 3, 32, 32)}
    for _ in range(args.rounds):  # interleave models so load changes hit all of them alike
        for name, model in models.items():
            for batch, x in inputs.items():
                results[name][batch].append(
                    _median_ms(model, x, args.repeats if batch == "1" else max(3, args.repeats // 5))
                )
    summary = {name: {b: statistics.median(v) for b, v in per.items()} for name, per in results.items()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "threads": args.threads,
        "rank": args.rank,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "params": {name: n_params(m) for name, m in models.items()},
        "median_ms": summary,
        "raw_ms": results,
    }
    (out / "latency.json").write_text(json.dumps(payload, indent=1))
    print(json.dumps(summary, indent=1))


# ----------------------------------------------------------------------------------------------- lines of code
def by_hand_tltorch(model: nn.Module, rank: float = 0.33) -> list[tuple[str, int, int, float]]:
    """The same compression as ``tensorize(model, "tucker", rank, min_params=1000)``, with tltorch's API alone."""
    import tensorly as tl
    import tltorch
    from tltorch.factorized_layers.factorized_convolution import tensor_to_kernel

    tl.set_backend("pytorch")  # global: tltorch needs it for every forward pass
    rows = []
    for name, module in list(model.named_modules()):
        if not isinstance(module, (nn.Conv2d, nn.Linear)) or module.weight.numel() < 1000:
            continue
        if isinstance(module, nn.Conv2d):
            new = tltorch.FactorizedConv.from_conv(
                module, rank=rank, factorization="tucker", implementation="factorized", fixed_rank_modes="spatial"
            )
            approx = tensor_to_kernel("tucker", new.weight.to_tensor())
        else:
            new = tltorch.FactorizedLinear.from_linear(
                module, rank=rank, factorization="tucker", implementation="reconstructed"
            )
            approx = new.weight.to_matrix()
        error = float((approx - module.weight).norm() / module.weight.norm())  # (no_grad omitted for brevity)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
        rows.append(
            (name, sum(p.numel() for p in module.parameters()), sum(p.numel() for p in new.parameters()), error)
        )
    for row in rows:
        print(*row)
    return rows


def with_trinity(model: nn.Module) -> Any:
    from trinity_lightning.tensor import tensorize

    report = tensorize(model, "tucker", rank=0.33, min_params=1000)
    print(report)
    return report


def _lines(fn: Any) -> int:
    """Non-blank, non-comment lines of ``fn``'s body as formatted in this file (no ``def`` line, no docstring)."""
    source = textwrap.dedent(inspect.getsource(fn))
    func = ast.parse(source).body[0]
    assert isinstance(func, ast.FunctionDef)
    body = func.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    lines = source.splitlines()[body[0].lineno - 1 : body[-1].end_lineno]
    return sum(1 for line in lines if line.strip() and not line.strip().startswith("#"))


# ----------------------------------------------------------------------------------------------- report
def _mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values)) if len(values) > 1 else 0.0


def summarize(records: list[dict[str, Any]], dataset: str) -> list[dict[str, Any]]:
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in records:
        if r["dataset"] == dataset:
            groups.setdefault((r["method"], r["factorization"], r["rank"]), []).append(r)
    rows = []
    for (method, fact, rank), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], str(kv[0][1]), kv[0][2] or 0)):
        acc, acc_sd = _mean_std([r["acc"] for r in rs])
        row = {
            "method": method,
            "factorization": fact,
            "rank": rank,
            "seeds": len(rs),
            "acc": acc,
            "acc_std": acc_sd,
            "params": int(np.mean([r["params"] for r in rs])),
            "head_params": int(np.mean([r["head_params"] for r in rs])),
            "per_seed_acc": [round(r["acc"], 4) for r in sorted(rs, key=lambda r: r["seed"])],
        }
        if "acc_before_ft" in rs[0]:
            row["acc_before_ft"] = float(np.mean([r["acc_before_ft"] for r in rs]))
        rows.append(row)
    return rows


def _label(row: dict[str, Any]) -> str:
    return f"{row['method']} {row['factorization']} rank={row['rank']}"


def _point(row: dict[str, Any], anchor: dict[str, Any], key: str) -> dict[str, Any]:
    return {
        "config": _label(row),
        "ratio": anchor[key] / row[key],
        "acc": row["acc"],
        "drop_points": 100 * (anchor["acc"] - row["acc"]),
    }


def iso_ratio(
    rows: list[dict[str, Any]], methods: tuple[str, ...], anchor: dict[str, Any], key: str, tolerance: float
) -> tuple[float, dict[str, Any] | None]:
    """Largest ``anchor[key] / row[key]`` among rows whose mean accuracy is within ``tolerance`` points of the anchor.

    ``(1.0, None)`` when no row qualifies: the anchor (dense) model itself is then the only iso-accuracy model.
    """
    best, best_row = 1.0, None
    for row in rows:
        if row["method"] in methods and row["acc"] >= anchor["acc"] - tolerance / 100:
            ratio = anchor[key] / row[key]
            if ratio > best:
                best, best_row = ratio, row
    return best, best_row


def at_target(
    rows: list[dict[str, Any]], methods: tuple[str, ...], anchor: dict[str, Any], key: str, target: float
) -> dict[str, Any] | None:
    """The most accurate row compressing at least ``target`` times, with its accuracy drop (points)."""
    hits = [r for r in rows if r["method"] in methods and anchor[key] / r[key] >= target]
    if not hits:
        return None
    return _point(max(hits, key=lambda r: r["acc"]), anchor, key)


def iso_claim(
    claim_id: str,
    what: str,
    rows: list[dict[str, Any]],
    methods: tuple[str, ...],
    anchor: dict[str, Any],
    key: str,
    tolerance: float,
    target: float | None = None,
) -> dict[str, Any]:
    """A "parameter ratio at iso-accuracy" claim that says plainly when no configuration was within tolerance.

    ``ours`` is the parameter count of the most compressed configuration within ``tolerance`` points of the anchor,
    or the anchor's own count when there is none (ratio 1.0: only the dense model is "iso-accurate"). A 1.0 is
    then not a measured ratio, so the claim also carries ``within_tolerance`` (empty), the ``closest`` (most
    accurate) configuration, the range of compressions the grid tested, and a one-line ``reading``.
    """
    from _results import claim

    candidates = [r for r in rows if r["method"] in methods]
    ratio, chosen = iso_ratio(rows, methods, anchor, key, tolerance)
    within = sorted(
        (_point(r, anchor, key) for r in candidates if r["acc"] >= anchor["acc"] - tolerance / 100),
        key=lambda point: -point["ratio"],
    )
    closest = _point(max(candidates, key=lambda r: r["acc"]), anchor, key) if candidates else None
    ratios = [anchor[key] / r[key] for r in candidates]
    tested = [min(ratios), max(ratios)] if ratios else None
    if chosen is None:
        reading = (
            f"no configuration came within {tolerance} pt of the anchor's {100 * anchor['acc']:.1f}%"
            + (
                f" (the most accurate, {closest['config']}, is {closest['drop_points']:.1f} pt below at "
                f"{closest['ratio']:.1f}x)"
                if closest
                else ""
            )
            + "; ratio 1.0 is the dense model itself, not a measured ratio"
            + (
                ""
                if not tested
                else f". The grid tested {tested[0]:.2f}x-{tested[1]:.1f}x, down to about the dense size, so within "
                f"this tolerance no compression keeps the accuracy here"
                if tested[0] < 1.1
                else f". The grid tested {tested[0]:.1f}x-{tested[1]:.1f}x only, so if accuracy rises with parameters "
                f"an iso-accuracy configuration compresses less than {tested[0]:.1f}x (not measured)"
            )
        )
    else:
        point = _point(chosen, anchor, key)
        reading = (
            f"{point['config']}: {point['ratio']:.2f}x fewer parameters at {100 * point['acc']:.1f}% "
            f"({abs(point['drop_points']):.2f} pt {'below' if point['drop_points'] >= 0 else 'above'} the anchor, "
            f"tolerance {tolerance})"
        )
        if target is not None:
            reading += "; target met" if ratio >= target else f"; under the {target:g}x target"
    extra: dict[str, Any] = {
        "chosen": chosen,
        "dense_acc": anchor["acc"],
        "tolerance_points": tolerance,
        "within_tolerance": within,
        "closest": closest,
        "tested_ratio_range": tested,
        "reading": reading,
    }
    if target is not None:
        extra["best_at_target"] = at_target(rows, methods, anchor, key, target)
    return claim(
        claim_id,
        what,
        ours=chosen[key] if chosen else anchor[key],
        anchor=anchor[key],
        better="lower",
        unit="params",
        target=target,
        **extra,
    )


def plot(summaries: dict[str, list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(summaries), figsize=(6.5 * len(summaries), 8.5), squeeze=False)
    colors = {"cp": "tab:blue", "tucker": "tab:orange", "tt": "tab:green"}
    panels = (
        (0, "params", {"tensorized": "s", "tensorized-prefix": "x"}, "parameters (whole network)"),
        (1, "head_params", {"trl": "o", "tcl+trl": "D"}, "parameters (classifier head)"),
    )
    for col, (dataset, rows) in enumerate(summaries.items()):
        dense = next(r for r in rows if r["method"] == "dense")
        for row_idx, key, styles, xlabel in panels:
            ax = axes[row_idx][col]
            for ref in rows:
                if ref["method"] in ("dense", "dense_ft"):
                    ax.errorbar(
                        [ref[key]],
                        [100 * ref["acc"]],
                        yerr=[100 * ref["acc_std"]],
                        marker="*",
                        ms=12,
                        color="black" if ref["method"] == "dense" else "gray",
                        ls="none",
                        label=f"{ref['method']} ({ref[key]:,})",
                    )
            # the claims' anchors: the whole network vs the dense CNN fine-tuned as long, the heads vs the dense CNN
            band = next((r for r in rows if r["method"] == "dense_ft"), dense) if row_idx == 0 else dense
            ax.axhspan(
                100 * band["acc"] - (1.0 if row_idx == 0 else 0.5),
                100 * band["acc"],
                color="gray",
                alpha=0.15,
                label="iso-accuracy band",
            )
            for method, marker in styles.items():
                for fact, color in colors.items():
                    pts = sorted(
                        (r[key], 100 * r["acc"], 100 * r["acc_std"])
                        for r in rows
                        if r["method"] == method and r["factorization"] == fact
                    )
                    if pts:
                        xs, ys, es = zip(*pts)
                        broken = "prefix" in method
                        ax.errorbar(
                            xs,
                            ys,
                            yerr=es,
                            marker=marker,
                            color=color,
                            capsize=2,
                            lw=1,
                            alpha=0.35 if broken else 1.0,
                            ls=":" if broken else "-",
                            label=f"{method} {fact}" + (" (old Tucker-linear ranks, fixed since)" if broken else ""),
                        )
            ax.set_xscale("log")
            ax.set_ylim(max(0, 100 * dense["acc"] - 25), 100 * max(r["acc"] for r in rows) + 3)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"test accuracy (%), mean +- std, {dense['seeds']} seed(s)")
            ax.set_title(f"{dataset}: " + ("tensorize() + fine-tune" if row_idx == 0 else "tensor heads"))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


NO_CONFIG = "; ratio 1.0 when no configuration is within tolerance (the dense model itself; see reading)"


def build_claims(summaries: dict[str, list[dict[str, Any]]], latency: dict[str, Any] | None) -> list[dict[str, Any]]:
    """All claims from the per-config summaries (see :func:`summarize`) and the latency measurement."""
    claims = []
    for ds, rows in summaries.items():
        dense = next(r for r in rows if r["method"] == "dense")
        dense_ft = next((r for r in rows if r["method"] == "dense_ft"), dense)
        suffix = "" if ds == "cifar10" else f"_{ds}"
        seeds = dense["seeds"]
        trl_facts = "/".join(
            {"cp": "CP", "tucker": "Tucker", "tt": "TT"}[f]
            for f in FACTORIZATIONS
            if any(r["method"] == "trl" and r["factorization"] == f for r in rows)
        )
        claims.append(
            iso_claim(
                f"trl_head_param_ratio_at_iso_accuracy{suffix}",
                f"{ds}: dense flatten+Linear head params / TRL head params, most compressed TRL ({trl_facts}, "
                f"{len({r['rank'] for r in rows if r['method'] == 'trl'})} ranks) with mean test acc within 0.5 pt "
                f"of the dense CNN ({seeds} seeds)" + NO_CONFIG,
                rows,
                ("trl",),
                dense,
                "head_params",
                0.5,
                target=10.0,
            )
        )
        if any(r["method"] == "tcl+trl" for r in rows):  # a CPU grid may skip the TCL heads (--head-groups)
            claims.append(
                iso_claim(
                    f"tcl_trl_head_param_ratio_at_iso_accuracy{suffix}",
                    f"{ds}: dense head params / TCL+TRL (Tucker) head params within 0.5 pt of dense" + NO_CONFIG,
                    rows,
                    ("tcl+trl",),
                    dense,
                    "head_params",
                    0.5,
                )
            )
        facts = sorted({str(r["factorization"]) for r in rows if r["method"] == "tensorized"}, key=FACTORIZATIONS.index)
        n_ranks = len({r["rank"] for r in rows if r["method"] == "tensorized"})
        excluded = (
            " (this grid's Tucker rows ran before the Tucker-linear fix and are excluded; see "
            "details.tucker_linear_fix_check)"
            if any(r["method"] == "tensorized-prefix" for r in rows)
            else ""
        )
        claims.append(
            iso_claim(
                f"tensorized_net_param_ratio_at_iso_accuracy{suffix}",
                f"{ds}: whole-network params, dense CNN / tensorize()d CNN (decomposed from the trained "
                f"dense weights, fine-tuned), most compressed of {'/'.join(f.upper() for f in facts)} x {n_ranks} "
                f"ranks{excluded} within 1.0 pt of the dense CNN fine-tuned for the same extra epochs "
                f"({seeds} seeds)" + NO_CONFIG,
                rows,
                ("tensorized",),
                dense_ft,
                "params",
                1.0,
                target=3.0,
            )
        )
    if latency:
        from _results import claim

        med = latency["median_ms"]
        for batch in ("256", "1"):
            claims.append(
                claim(
                    f"tensorized_latency_b{batch}",
                    f"CPU inference latency, batch {batch}, CIFAR CNN dense / tensorize(tucker, "
                    f"rank={latency['rank']}) ({latency['threads']} thread(s), median of "
                    f"{latency['rounds']} interleaved rounds); ratio > 1 means the tensorized net is faster",
                    ours=med["tensorized_tucker"][batch],
                    anchor=med["dense"][batch],
                    better="lower",
                    unit="ms",
                )
            )
    return claims


def lines_of_code() -> dict[str, Any]:
    """Lines of the tltorch-by-hand compression vs ``tensorize()`` (both functions in this script)."""
    return {
        "tltorch_by_hand": _lines(by_hand_tltorch),
        "trinity_tensorize": _lines(with_trinity),
        "note": "non-blank, non-comment lines of the two function bodies in this script as formatted (no def "
        "line, no docstring); the by-hand version has no rank checks, no restore-from-checkpoint, no "
        "detensorize and sets the global TensorLy backend",
    }


def _read_latency(path: str) -> dict[str, Any]:
    """A ``latency.json`` from the latency mode, or a results file whose ``details.latency`` holds one."""
    payload = json.loads(Path(path).read_text())
    if "median_ms" in payload:
        return dict(payload)
    if "latency" in payload.get("details", {}):
        return dict(payload["details"]["latency"])
    raise ValueError(f"latency: {path} is neither a latency.json nor a results file with details.latency")


def _kept_summaries(path: Path, summaries: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Add to ``summaries`` (in place, in :data:`DATASETS` order) the datasets this grid lacks, from results ``path``.

    Returns the provenance for ``details``: which datasets were kept, the grid that measured them, and the earlier
    rows of the datasets this grid re-measured (kept for reference, never mixed into a claim: the two grids may
    differ in data subset, device and ranks).
    """
    stored = json.loads(path.read_text())["details"]
    earlier_meta = stored.get("grid_meta_by_dataset") or {ds: stored.get("grid_meta") for ds in stored["summary"]}
    kept = [ds for ds in stored["summary"] if ds not in summaries]
    replaced = {ds: rows for ds, rows in stored["summary"].items() if ds in summaries}
    merged = {**summaries, **{ds: stored["summary"][ds] for ds in kept}}
    summaries.clear()
    summaries.update({ds: merged[ds] for ds in DATASETS if ds in merged})
    return {
        "grid_meta_by_dataset": {ds: earlier_meta.get(ds) for ds in kept},
        "kept_from": {"path": os.path.relpath(path.resolve(), ROOT), "datasets": kept},
        "earlier_summary_replaced": replaced,
    }


def run_report(args: argparse.Namespace) -> None:
    from _results import write_results

    if args.from_results:  # recompute claims from a results file's stored summaries (no raw grid needed)
        stored = json.loads(Path(args.from_results).read_text())
        details = stored["details"]
        summaries = details["summary"]
        latency = details.get("latency")
        command = args.command or (
            stored["command"].split("; report --from-results")[0]
            + "; report --from-results (claims recomputed from details.summary)"
        )
    else:
        grids = [json.loads(Path(path).read_text()) for path in args.grid]  # e.g. one grid per dataset
        latency = _read_latency(args.latency) if args.latency else None
        records = []
        for grid in grids:
            if not grid["meta"].get("tucker_linear_fixed"):  # see details["tucker_linear_fix_check"]
                for r in grid["records"]:
                    if r["method"] == "tensorized" and r["factorization"] == "tucker":
                        r["method"] = "tensorized-prefix"
            records += grid["records"]
        datasets = [ds for ds in DATASETS if any(r["dataset"] == ds for r in records)]
        summaries = {ds: summarize(records, ds) for ds in datasets}
        metas = [grid["meta"] for grid in grids]
        details = {"grid_meta": metas[0] if len(metas) == 1 else metas, "summary": summaries}
        if args.keep_from:  # a grid of some datasets only: the others' summaries come from an earlier results file
            details.update(_kept_summaries(Path(args.keep_from), summaries))
        if latency:
            details["latency"] = latency
        if args.extra:
            extra = json.loads(Path(args.extra).read_text())
            details["tucker_linear_fix_check"] = {
                "meta": extra["meta"],
                "summary": {
                    ds: summarize(extra["records"], ds)
                    for ds in DATASETS
                    if any(r["dataset"] == ds for r in extra["records"])
                },
                "note": "the GPU grid above ran before the fix that keeps a Tucker-tensorized linear layer's output "
                "modes at full rank (its 'tensorized tucker' rows are the broken variant); this reduced CPU run "
                "(1 seed, subset, fewer epochs) re-measures CP/Tucker/TT after the fix",
            }
        command = args.command or (
            "; ".join(
                f"python benchmarks/tensor_layers.py {meta['argv']} ({meta['device']}, {meta['seconds']:.0f} s)"
                for meta in metas
            )
            + "; report "
            + " ".join(sys.argv[2:])
            if all(meta.get("argv") for meta in metas)
            else None
        )
    claims = build_claims(summaries, latency)
    details["lines_of_code"] = lines_of_code()
    plot_path = Path(args.plot_path) if args.plot_path else ROOT / "docs" / "img" / "tensor_tradeoff.png"
    details["plot"] = os.path.relpath(plot_path, ROOT) if plot_path.is_relative_to(ROOT) else str(plot_path)
    if not args.from_results or args.plot:
        plot(summaries, plot_path)
    results_dir = Path(args.results_dir) if args.results_dir else None
    path = write_results("tensor_layers", claims, details, command=command, results_dir=results_dir)
    print(path)
    for c in claims:
        print(c["id"], c.get("ratio"), c.get("met"), c.get("reading", ""))
    print(markdown_table(summaries))


def markdown_table(summaries: dict[str, list[dict[str, Any]]]) -> str:
    """The per-configuration table of docs/tensor.md (mean +- std over seeds), from the summaries."""
    names = {"cp": "CP", "tucker": "Tucker", "tt": "TT"}
    lines = [
        "| dataset | model | params (net) | params (head) | ratio | test acc (%) | before fine-tuning (%) |",
        "|---|---|---|---|---|---|---|",
    ]
    for ds, rows in summaries.items():
        dense = next(r for r in rows if r["method"] == "dense")
        for r in rows:
            if r["method"] == "tensorized-prefix":
                continue
            fact, rank = names.get(str(r["factorization"]), ""), r["rank"]
            model, key = {
                "dense": ("dense CNN", "params"),
                "dense_ft": ("dense CNN + fine-tune epochs", "params"),
                "trl": (f"TRL head, {fact}, rank {rank}", "head_params"),
                "tcl+trl": (f"TCL + {fact} TRL head, rank {rank}", "head_params"),
                "tensorized": (f"`tensorize({r['factorization']!s}, {rank})` + fine-tune", "params"),
            }[r["method"]]
            before = f"{100 * r['acc_before_ft']:.1f}" if "acc_before_ft" in r else ""
            lines.append(
                f"| {ds} | {model} | {r['params']:,} | {r['head_params']:,} | {dense[key] / r[key]:.2f}x "
                f"| {100 * r['acc']:.1f} ± {100 * r['acc_std']:.1f} | {before} |"
            )
    return "\n".join(lines)


def parse_sizes(items: list[str]) -> dict[str, tuple[int, int]]:
    """``["cifar10=1500/300", ...]`` -> ``{"cifar10": (1500, 300)}``, naming the bad item."""
    sizes = {}
    for item in items:
        name, _, counts = item.partition("=")
        train, _, test = counts.partition("/")
        if name not in DATASETS or not (train.isdigit() and test.isdigit()) or int(train) < 1 or int(test) < 1:
            raise ValueError(
                f"sizes: expected DATASET=TRAIN/TEST with DATASET in {list(DATASETS)} and positive counts per class, "
                f"got {item!r}"
            )
        sizes[name] = (int(train), int(test))
    return sizes


def run_prepare(args: argparse.Namespace) -> None:
    info = prepare_data(Path(args.out), parse_sizes(args.sizes), args.seed)
    print(json.dumps(info, indent=1))
    if args.wheels:
        print("wheels:", download_wheels(Path(args.wheels)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    prep = sub.add_parser("prepare", help="write the grid's .npz of seeded, class-stratified subsets")
    prep.add_argument("--out", default=".device_data/tensor/bench_data.npz")
    prep.add_argument(
        "--sizes",
        nargs="+",
        default=[f"{ds}={tr}/{te}" for ds, (tr, te) in SUBSET_PER_CLASS.items()],
        help="DATASET=TRAIN/TEST images per class (default: %(default)s, the stored grid's sizes)",
    )
    prep.add_argument("--seed", type=int, default=SUBSET_SEED)
    prep.add_argument("--wheels", default=None, help="also download the tensorly + tensorly-torch wheels here")
    g = sub.add_parser("grid")
    g.add_argument("--data", default="shared", help="'shared' (trinity_lightning.data loaders) or an .npz path")
    g.add_argument("--out", required=True)
    g.add_argument("--datasets", nargs="+", default=list(DATASETS))
    g.add_argument("--seeds", type=int, default=3)
    g.add_argument(
        "--seed-list",
        nargs="+",
        type=int,
        default=None,
        help="these seeds instead of 0..seeds-1 (e.g. to finish a job a --budget cut off)",
    )
    g.add_argument("--groups", nargs="+", default=["net", "heads"], choices=["net", "heads"])
    g.add_argument(
        "--head-groups",
        nargs="+",
        default=list(HEAD_GROUPS),
        choices=list(HEAD_GROUPS),
        help="which head jobs 'heads' runs (a CPU grid drops some to fit its time)",
    )
    g.add_argument("--net-factorizations", nargs="+", default=list(FACTORIZATIONS), choices=list(FACTORIZATIONS))
    g.add_argument("--trl-ranks", nargs="+", type=float, default=list(TRL_RANKS))
    g.add_argument("--tcl-trl-ranks", nargs="+", type=float, default=list(TCL_TRL_RANKS))
    g.add_argument("--net-ranks", nargs="+", type=float, default=list(NET_RANKS))
    g.add_argument("--epochs", type=int, default=None, help="override the per-dataset epochs")
    g.add_argument("--ft-epochs", type=int, default=4)
    g.add_argument("--train-limit", type=int, default=None)
    g.add_argument("--test-limit", type=int, default=None)
    g.add_argument(
        "--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1), help="processes; 0 = in this process"
    )
    g.add_argument(
        "--budget",
        type=float,
        default=3600.0,
        help="seconds; then the pool is stopped and grid.json holds what finished (meta.complete=false)",
    )
    g.add_argument("--device", default=None)
    lat = sub.add_parser("latency")
    lat.add_argument("--out", required=True)
    lat.add_argument("--rank", type=float, default=0.33)
    lat.add_argument("--threads", type=int, default=1)
    lat.add_argument("--rounds", type=int, default=5)
    lat.add_argument("--repeats", type=int, default=30)
    rep = sub.add_parser("report")
    source = rep.add_mutually_exclusive_group(required=True)
    source.add_argument("--grid", nargs="+", help="grid.json file(s) written by the grid mode (e.g. one per dataset)")
    source.add_argument("--from-results", help="recompute the claims from a results file's details.summary")
    rep.add_argument("--plot", action="store_true", help="with --from-results: redraw the plot too")
    rep.add_argument("--latency", default=None, help="latency.json, or a results file with details.latency")
    rep.add_argument("--command", default=None)
    rep.add_argument("--results-dir", default=None, help="where tensor_layers.json goes (default benchmarks/results)")
    rep.add_argument("--plot-path", default=None, help="default docs/img/tensor_tradeoff.png")
    rep.add_argument(
        "--keep-from",
        default=None,
        help="with --grid: an earlier results file whose summaries fill in the datasets this grid did not run",
    )
    rep.add_argument("--extra", default=None, help="a reduced grid.json to attach as details (post-fix check)")
    args = parser.parse_args()
    {"prepare": run_prepare, "grid": run_grid, "latency": run_latency, "report": run_report}[args.mode](args)


if __name__ == "__main__":
    main()
