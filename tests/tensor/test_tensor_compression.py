"""``benchmarks/tensor_compression.py``: device batches, job schedule, claims from complete runs only, and the same
records from a process pool as from one process (a synthetic CIFAR-10 archive read through ``TRINITY_DATA``)."""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = str(ROOT / "benchmarks" / "tensor_compression.py")


@pytest.fixture(scope="module")
def tc() -> ModuleType:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(
        "tensor_compression_bench", ROOT / "benchmarks" / "tensor_compression.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _args(**overrides: object) -> argparse.Namespace:
    values: dict[str, object] = {
        "parts": ["head", "net"],
        "trl_ranks": [0.1, 0.03],
        "net_ranks": [0.25, 0.1],
        "seeds": [0, 1],
        "epochs": 4,
        "finetune_fraction": 0.25,
    }
    values.update(overrides)
    return argparse.Namespace(**values)


def test_device_batches_shuffle_per_epoch_drop_the_last_partial_batch_and_repeat_for_a_seed(tc):
    x, y = torch.arange(10.0)[:, None], torch.arange(10)
    batches = tc.DeviceBatches(x, y, batch_size=4, seed=3)
    first, second = [b[1].tolist() for b in batches], [b[1].tolist() for b in batches]
    assert len(batches) == 2 and [len(b) for b in first] == [4, 4]
    assert first != second  # a new permutation per epoch
    assert all(
        len({i for batch in epoch for i in batch}) == 8 for epoch in (first, second)
    )  # no repeats inside an epoch
    again = tc.DeviceBatches(x, y, batch_size=4, seed=3)
    assert [b[1].tolist() for b in again] == first
    for xb, yb in tc.DeviceBatches(x, y, batch_size=4, seed=3):
        assert torch.equal(xb[:, 0].long(), yb)
    with pytest.raises(ValueError, match="DeviceBatches"):
        tc.DeviceBatches(x, y[:5], batch_size=4, seed=0)


def test_jobs_run_the_dense_jobs_first_and_the_fine_tunes_inside_them(tc):
    args = _args()
    jobs = tc.jobs(args)
    assert jobs[:2] == [("head:dense", 0), ("head:dense", 1)]
    assert len(jobs) == 2 * 7 and not any("finetune" in v for v, _ in jobs)
    order = tc.variant_order(args)
    assert order == [
        "head:dense",
        "head:trl@0.1",
        "head:trl@0.03",
        "head:tcl+trl@0.1",
        "head:gap+fc",
        "net:finetune@0.25",
        "net:finetune@0.1",
        "net:scratch@0.25",
        "net:scratch@0.1",
    ]
    shuffled = [{"variant": v, "seed": s} for s in (1, 0) for v in reversed(order)]
    assert [(r["seed"], r["variant"]) for r in tc.canonical(shuffled, args)] == [(s, v) for s in (0, 1) for v in order]
    assert [v for v, _ in tc.jobs(_args(parts=["head"]))] == [v for v in order if v.startswith("head:") for _ in (0, 1)]


def test_iso_accuracy_counts_only_complete_runs(tc):
    runs = [
        {"variant": "head:dense", "seed": 0, "test_acc": 80.0, "net_params": 1000, "complete": True},
        {"variant": "net:scratch@0.25", "seed": 0, "test_acc": 79.5, "net_params": 250, "complete": True},
        {"variant": "net:scratch@0.1", "seed": 0, "test_acc": 79.9, "net_params": 100, "complete": False},
        {"variant": "net:finetune@0.1", "seed": 0, "test_acc": 78.9, "net_params": 100},  # no flag: a complete run
    ]
    iso = tc._iso(runs, ["net:scratch@0.25", "net:scratch@0.1", "net:finetune@0.1"], "net_params")
    assert "net:scratch@0.1" not in iso["table"]
    assert iso["at_iso_accuracy"] == ["head:dense", "net:scratch@0.25"]  # 78.9 < 80 - 1
    assert iso["smallest_at_iso"] == "net:scratch@0.25"
    assert tc._iso([{**runs[0], "complete": False}], [], "net_params") is None


def _fake_cifar(root: Path, train_per_class: int, test_per_class: int) -> None:
    """A CIFAR-10-shaped JPEG archive (``train/<class>/<i>.jpg``) of random images, as ``load_cifar10`` reads."""
    from PIL import Image

    from trinity_lightning.data.shared import CIFAR10_CLASSES

    rng = np.random.default_rng(0)
    (root / "cifar10_jpeg").mkdir(parents=True)
    with zipfile.ZipFile(root / "cifar10_jpeg" / "cifar10_jpeg.zip", "w") as z:
        for split, n in (("train", train_per_class), ("test", test_per_class)):
            for label, name in enumerate(CIFAR10_CLASSES):
                for i in range(n):
                    pixels = rng.integers(0, 256, (32, 32, 3)) // 2 + label * 12
                    buffer = io.BytesIO()
                    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="JPEG")
                    z.writestr(f"{split}/{name}/{i:04d}.jpg", buffer.getvalue())


@pytest.mark.slow
def test_two_workers_give_the_records_of_one(tmp_path):
    """The pool (spawned processes, longest job first) stores the same records, in the same order, as one process."""
    _fake_cifar(tmp_path / "data", train_per_class=26, test_per_class=10)
    env = {
        **os.environ,
        "TRINITY_DATA": str(tmp_path / "data"),
        "TRINITY_CACHE": str(tmp_path / "cache"),
        "PYTHONPATH": str(ROOT / "src"),
        "OMP_NUM_THREADS": "1",
    }
    common = ["--scale", "smoke", "--train-size", "256", "--test-size", "100", "--trl-ranks", "0.1"]
    common += ["--net-ranks", "0.25", "--device", "cpu"]
    runs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        subprocess.run(
            [sys.executable, SCRIPT, *common, "--workers", str(workers), "--results-dir", str(out)],
            check=True,
            env=env,
            capture_output=True,
        )
        details = json.loads((out / "tensor_compression.json").read_text())["details"]
        assert details["complete"] and details["workers"] == workers
        runs[workers] = [{k: v for k, v in r.items() if k not in ("seconds", "cpu_seconds")} for r in details["runs"]]
    assert [r["variant"] for r in runs[1]] == [
        "head:dense",
        "head:trl@0.1",
        "head:tcl+trl@0.1",
        "head:gap+fc",
        "net:finetune@0.25",
        "net:scratch@0.25",
    ]
    assert all(r["steps"] == 2 and r["complete"] for r in runs[1])
    assert runs[2] == runs[1]
