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


def _record(variant: str, seed: int, acc: float, params: int, complete: bool = True) -> dict[str, object]:
    record: dict[str, object] = {"variant": variant, "seed": seed, "test_acc": acc, "net_params": params}
    record.update(complete=complete, seconds=2.0, cpu_seconds=1.5)
    if variant.startswith("head:"):
        record["head_params"] = params - 100
    return record


def _head_file(tc: ModuleType, path: Path) -> Path:
    """A --scale cpu results file with both parts: TRL 0.1 within a point; net: scratch@0.25 within a point."""
    args = _args(seeds=[0, 1], scale="cpu", train_size=400, test_size=200, trl_ranks=[0.1], net_ranks=[0.25, 0.1])
    args.__dict__.update(device="cpu", workers=1, out="tensor_compression", results_dir=path, head_from=None)
    runs = []
    for seed in (0, 1):
        runs += [
            _record("head:dense", seed, 60.0 + seed, 1100),
            _record("head:trl@0.1", seed, 59.5 + seed, 200),
            _record("head:tcl+trl@0.1", seed, 50.0, 300),
            _record("head:gap+fc", seed, 55.0, 150),
            _record("net:finetune@0.25", seed, 50.0, 400),
            _record("net:finetune@0.1", seed, 40.0, 150),
            _record("net:scratch@0.25", seed, 60.2 + seed, 400),
            _record("net:scratch@0.1", seed, 55.0, 150),
        ]
    args.__dict__["note"] = "the head run"
    tc.summarize(runs, args)
    return path / "tensor_compression.json"


def _full_runs(seeds: tuple[int, ...], scratch10: float, cut: bool = False) -> list[dict[str, object]]:
    runs = []
    for seed in seeds:
        runs += [
            _record("head:dense", seed, 70.0, 1100),
            _record("net:finetune@0.25", seed, 62.0, 400),
            _record("net:finetune@0.1", seed, 50.0, 150),
            _record("net:scratch@0.25", seed, 66.0, 400),
            _record("net:scratch@0.1", seed, scratch10, 150, complete=not (cut and seed == seeds[-1])),
        ]
    return runs


def _full_args(tc: ModuleType, out: Path, head_from: Path) -> argparse.Namespace:
    args = _args(parts=["net"], seeds=[0, 1], scale="full", train_size=800, test_size=300, net_ranks=[0.25, 0.1])
    args.__dict__.update(device="cpu", workers=1, out="tensor_compression", results_dir=out, head_from=head_from)
    args.__dict__.update(run_command="python benchmarks/tensor_compression.py --scale full --parts net", note="x")
    return args


def test_head_from_keeps_the_head_claim_and_moves_the_net_claim_only_when_every_net_run_finished(tc, tmp_path):
    head_file = _head_file(tc, tmp_path / "cpu")
    head_run = tc.load_head_run(head_file)
    assert head_run["scale"] == "cpu" and head_run["note"] == "the head run" and "protocol" not in head_run
    assert len(head_run["runs"]) == 16 and head_run["command"].startswith("python ")

    # every full-data net run finished: the net claim moves, the head claim stays on the cpu run
    args = _full_args(tc, tmp_path / "full", head_file)
    runs = _full_runs((0, 1), scratch10=69.5)
    assert tc.net_complete(runs, args)
    tc.summarize(runs, args)
    merged = json.loads((tmp_path / "full" / "tensor_compression.json").read_text())
    claims = {c["id"]: c for c in merged["claims"]}
    head = claims["trl_head_param_ratio_at_iso_accuracy"]
    assert (head["ours"], head["anchor"], head["variant"]) == (100, 1000, "head:trl@0.1")
    assert head["what"].startswith("CIFAR-10 (400 training / 200 test images), 4 epochs, mean of 2 seeds")
    net = claims["tensorized_net_param_ratio_at_iso_accuracy"]
    assert (net["ours"], net["anchor"], net["variant"]) == (150, 1100, "net:scratch@0.1")  # 69.5 >= 70 - 1
    assert net["what"].startswith("CIFAR-10 (800 training / 300 test images)")
    d = merged["details"]
    assert d["net_claim_from"] == "net_full_scale" and d["claim_rule"] == tc.FULL_DATA_RULE
    assert d["net_full_scale"]["table"]["net:scratch@0.1"]["per_seed"] == [69.5, 69.5]
    assert d["net_full_scale"]["command"] == args.run_command
    assert d["net_cpu_scale"]["smallest_at_iso"] == "net:scratch@0.25"
    assert d["net_cpu_scale"]["table"]["head:dense"]["per_seed"] == [60.0, 61.0]
    assert d["gap_fc"]["per_seed"] == [55.0, 55.0] and d["note"] == "x"
    assert d["runs"] == runs and d["complete"] and d["records_expected"] == 10
    assert d["head_run"]["runs"] == head_run["runs"]
    # a merged file gives the same head run back
    assert tc.load_head_run(tmp_path / "full" / "tensor_compression.json") == head_run

    # one run cut by the budget: the net claim stays on the cpu run, the full-data seeds are reported beside
    args = _full_args(tc, tmp_path / "cut", head_file)
    runs = _full_runs((0, 1), scratch10=69.5, cut=True)
    assert not tc.net_complete(runs, args)
    tc.summarize(runs, args)
    d = json.loads((tmp_path / "cut" / "tensor_compression.json").read_text())
    net = {c["id"]: c for c in d["claims"]}["tensorized_net_param_ratio_at_iso_accuracy"]
    assert (net["ours"], net["variant"]) == (400, "net:scratch@0.25")
    assert net["what"].startswith("CIFAR-10 (400 training / 200 test images)")
    d = d["details"]
    assert d["net_claim_from"] == "net_cpu_scale" and d["net"] == {
        k: v for k, v in d["net_cpu_scale"].items() if k != "setting"
    }
    assert d["net_full_scale"]["table"]["net:scratch@0.1"]["seeds"] == [0]
    assert d["incomplete_runs"] == ["net:scratch@0.1 seed 1"] and not d["complete"]

    # a seed missing altogether (not started) also keeps the claim where it was
    assert not tc.net_complete(_full_runs((0,), scratch10=69.5), args)


def test_head_from_needs_a_file_with_heads_and_a_net_only_run(tc, tmp_path):
    head_file = _head_file(tc, tmp_path / "cpu")
    args = _full_args(tc, tmp_path / "full", head_file)
    tc.summarize(_full_runs((0, 1), scratch10=60.0), args)
    net_only = json.loads((tmp_path / "full" / "tensor_compression.json").read_text())
    del net_only["details"]["head_run"]
    (tmp_path / "net_only.json").write_text(json.dumps(net_only))
    with pytest.raises(ValueError, match=r"--head-from: .* holds no head records"):
        tc.load_head_run(tmp_path / "net_only.json")
    args.parts = ["head", "net"]
    with pytest.raises(ValueError, match="--head-from: the heads come from that file"):
        tc.summarize(_full_runs((0, 1), scratch10=60.0), args)


def _paper_runs(scratch25: float, cut: bool = False) -> list[dict[str, object]]:
    runs = []
    for seed in (0, 1):
        runs += [
            _record("head:dense", seed, 80.0, 1100),
            _record("net:finetune@0.25", seed, 74.0, 400),
            _record("net:scratch@0.25", seed, scratch25, 400, complete=not (cut and seed == 1)),
        ]
    return runs


def test_a_paper_scale_merge_on_a_merged_file_keeps_every_earlier_net_table_and_its_claim_when_cut(tc, tmp_path):
    """``--head-from`` on a file merged before (head run at --scale cpu, net claim from --scale full): a complete
    --scale paper whole-net run takes the net claim (here: no net within a point, so ratio 1) under PAPER_SCALE_RULE
    and keeps the full-scale table and rule beside; a cut one leaves the claim on the full-scale run."""
    head_file = _head_file(tc, tmp_path / "cpu")
    tc.summarize(_full_runs((0, 1), scratch10=69.5), _full_args(tc, tmp_path / "full", head_file))
    merged = tmp_path / "full" / "tensor_compression.json"
    before = json.loads(merged.read_text())

    def paper_args(out: Path) -> argparse.Namespace:
        args = _args(parts=["net"], seeds=[0, 1], scale="paper", train_size=800, test_size=300, net_ranks=[0.25])
        args.__dict__.update(device="cpu", workers=1, out="tensor_compression", results_dir=out, head_from=merged)
        args.__dict__.update(run_command="python benchmarks/tensor_compression.py --scale paper --parts net", note="p")
        return args

    tc.summarize(_paper_runs(scratch25=77.5), paper_args(tmp_path / "paper"))
    d = json.loads((tmp_path / "paper" / "tensor_compression.json").read_text())
    net = {c["id"]: c for c in d["claims"]}[tc.NET_CLAIM]
    assert (net["ratio"], net["variant"], net["met"]) == (1.0, "head:dense", False)  # 77.5 < 80 - 1
    d = d["details"]
    assert d["net_claim_from"] == "net_paper_scale" and d["claim_rule"] == tc.PAPER_SCALE_RULE
    assert d["claim_rule_full_scale"] == tc.FULL_DATA_RULE
    assert d["net_full_scale"] == before["details"]["net_full_scale"]  # the 8-epoch table stays beside
    assert d["net_paper_scale"]["table"]["net:scratch@0.25"]["per_seed"] == [77.5, 77.5]
    assert d["head_run"]["runs"] == before["details"]["head_run"]["runs"]
    assert d["runs_full_scale"] == before["details"]["runs"]  # the 8-epoch net run's records stay too

    tc.summarize(_paper_runs(scratch25=77.5, cut=True), paper_args(tmp_path / "cut"))
    d = json.loads((tmp_path / "cut" / "tensor_compression.json").read_text())
    net = {c["id"]: c for c in d["claims"]}[tc.NET_CLAIM]
    assert net == {c["id"]: c for c in before["claims"]}[tc.NET_CLAIM]  # the claim stays on the full-scale run
    assert d["details"]["net_claim_from"] == "net_full_scale" and d["details"]["net"] == before["details"]["net"]
    assert d["details"]["net_paper_scale"]["table"]["net:scratch@0.25"]["seeds"] == [0]


def test_one_process_runs_the_jobs_seed_by_seed(tc, monkeypatch, tmp_path):
    ran: list[tuple[str, int]] = []

    def job(variant: str, seed: int, args: argparse.Namespace, deadline: float | None) -> list[dict[str, object]]:
        ran.append((variant, seed))
        return [_record(variant, seed, 50.0, 100)]

    monkeypatch.setattr(tc, "_job", job)
    args = _args(parts=["net"], seeds=[0, 1, 2], workers=1, budget=None)
    runs = tc.run_jobs(args, [_record("head:dense", 0, 50.0, 100)], tmp_path / "partial.json")
    assert ran == [(v, s) for s in (0, 1, 2) for v in ("head:dense", "net:scratch@0.25", "net:scratch@0.1")][1:]
    assert len(json.loads((tmp_path / "partial.json").read_text())) == len(runs) == 9


def test_heads_picks_the_head_jobs_and_the_stored_order(tc):
    args = _args(parts=["head"], trl_ranks=[0.4], heads=["trl", "tcl+trl"])
    assert tc.variant_order(args) == ["head:dense", "head:trl@0.4", "head:tcl+trl@0.4"]
    assert tc.jobs(args)[:2] == [("head:dense", 0), ("head:dense", 1)] and len(tc.jobs(args)) == 6
    assert tc.head_variants(_args(trl_ranks=[0.4])) == ["head:trl@0.4", "head:tcl+trl@0.4", "head:gap+fc"]
    # dense records already in the partial file (another run's, same seeds) are not trained again
    done = [_record("head:dense", 0, 80.0, 1100), _record("head:dense", 1, 81.0, 1100)]
    todo = [(v, s) for v, s in tc.jobs(args) if (v, s) not in {(r["variant"], r["seed"]) for r in done}]
    assert todo == [("head:trl@0.4", 0), ("head:trl@0.4", 1), ("head:tcl+trl@0.4", 0), ("head:tcl+trl@0.4", 1)]


def _paper_head_file(tc: ModuleType, path: Path, trl: float) -> Path:
    """A --scale paper head-only results file: dense 80 / 81, TRL 0.4 at ``trl``, TCL + TRL 0.4 at 70, GAP + FC."""
    args = _args(parts=["head"], seeds=[0, 1], scale="paper", train_size=900, test_size=300, trl_ranks=[0.4])
    args.__dict__.update(device="cpu", workers=2, out="tensor_compression_paper_head", results_dir=path)
    args.__dict__.update(head_from=None, heads=list(tc.HEAD_KINDS), note="paper heads")
    runs = []
    for seed in (0, 1):
        runs += [
            _record("head:dense", seed, 80.0 + seed, 1100),
            _record("head:trl@0.4", seed, trl, 400),
            _record("head:tcl+trl@0.4", seed, 70.0, 500),
            _record("head:gap+fc", seed, 65.0, 150),
        ]
    tc.summarize(runs, args)
    return path / "tensor_compression_paper_head.json"


def test_attach_head_run_moves_the_head_claim_only_when_told_and_keeps_the_rest(tc, tmp_path):
    head_file = _head_file(tc, tmp_path / "cpu")
    tc.summarize(_full_runs((0, 1), scratch10=69.5), _full_args(tc, tmp_path / "full", head_file))
    target = tmp_path / "full" / "tensor_compression.json"
    before = json.loads(target.read_text())
    paper = _paper_head_file(tc, tmp_path / "paper", trl=79.8)  # within 1 point of 80.5

    moved_path = tmp_path / "moved.json"
    moved_path.write_text(target.read_text())
    tc.attach_head_run(moved_path, paper, move=True, rule="RULE")
    moved = json.loads(moved_path.read_text())
    claims = {c["id"]: c for c in moved["claims"]}
    head = claims[tc.HEAD_CLAIM]
    assert (head["ours"], head["anchor"], head["variant"]) == (300, 1000, "head:trl@0.4")
    assert head["what"].startswith("CIFAR-10 (900 training / 300 test images), 4 epochs, mean of 2 seeds")
    assert claims[tc.NET_CLAIM] == {c["id"]: c for c in before["claims"]}[tc.NET_CLAIM]
    d = moved["details"]
    assert d["head_run"]["scale"] == "paper" and d["head_run_cpu_scale"] == before["details"]["head_run"]
    assert d["gap_fc"]["per_seed"] == [65.0, 65.0] and d["head_claim_rule"] == "RULE"
    assert d["net"] == before["details"]["net"] and d["runs"] == before["details"]["runs"]
    assert (moved["command"], moved["date"]) == (before["command"], before["date"])

    # not moved: the claim and the head run stay; the new run is reported beside, with the claim it would give
    kept_path = tmp_path / "kept.json"
    kept_path.write_text(target.read_text())
    tc.attach_head_run(kept_path, _paper_head_file(tc, tmp_path / "paper_low", trl=75.0), move=False, rule="R")
    kept = json.loads(kept_path.read_text())
    assert kept["claims"] == before["claims"]
    beside = kept["details"]["heads_paper_scale"]
    assert beside["claim_if_moved"]["ratio"] == 1000 / 1000 and beside["heads"]["smallest_at_iso"] == "head:dense"
    assert kept["details"]["head_run"] == before["details"]["head_run"]

    # a later --head-from merge on the moved file keeps the earlier head run and the head rule
    args = _full_args(tc, tmp_path / "again", moved_path)
    tc.summarize(_full_runs((0, 1), scratch10=69.5), args)
    again = json.loads((tmp_path / "again" / "tensor_compression.json").read_text())["details"]
    assert again["head_run_cpu_scale"] == before["details"]["head_run"] and again["head_claim_rule"] == "RULE"
    assert again["head_run"]["scale"] == "paper"
