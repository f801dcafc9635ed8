"""The grid's data: seeded, class-stratified subsets in one ``.npz`` (``prepare``), read back as tensors."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import DATASETS, SUBSET_PER_CLASS, SUBSET_SEED


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
