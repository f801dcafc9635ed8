"""The tensor benchmark's claim arithmetic and the docs' line counts (no training: synthetic summary rows)."""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tensor_layers_bench", ROOT / "benchmarks" / "tensor_layers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _record(method, acc, params, head, fact=None, rank=None, seed=0):
    """One CIFAR-10 grid record, as the grid mode writes it."""
    return {
        "dataset": "cifar10",
        "seed": seed,
        "method": method,
        "factorization": fact,
        "rank": rank,
        "acc": acc,
        "params": params,
        "head_params": head,
    }


def _row(method, acc, head_params, params=1000, factorization="cp", rank=0.1):
    return {
        "method": method,
        "factorization": factorization,
        "rank": rank,
        "seeds": 3,
        "acc": acc,
        "acc_std": 0.0,
        "params": params,
        "head_params": head_params,
    }


def test_no_configuration_within_tolerance_reads_as_such(bench):
    dense = _row("dense", 0.80, 2000, factorization=None, rank=None)
    rows = [dense, _row("trl", 0.75, 200, rank=0.1), _row("trl", 0.60, 50, rank=0.03)]
    c = bench.iso_claim("x", "what", rows, ("trl",), dense, "head_params", 0.5, target=10.0)
    assert (c["ours"], c["anchor"], c["ratio"], c["met"]) == (2000, 2000, 1.0, False)
    assert c["chosen"] is None and c["within_tolerance"] == []
    assert c["closest"]["config"] == "trl cp rank=0.1" and c["closest"]["ratio"] == 10.0
    assert c["closest"]["drop_points"] == pytest.approx(5.0)
    assert c["tested_ratio_range"] == [10.0, 40.0]
    assert "not a measured ratio" in c["reading"] and "less than 10.0x" in c["reading"]
    assert c["best_at_target"]["config"] == "trl cp rank=0.1"


def test_most_compressed_configuration_within_tolerance_is_chosen(bench):
    dense = _row("dense", 0.80, 2000, params=9000, factorization=None, rank=None)
    rows = [
        dense,
        _row("tensorized", 0.792, 0, params=3000, rank=0.33),  # 0.8 pt below: within 1.0, 3x
        _row("tensorized", 0.795, 0, params=4500, rank=0.5),  # within, 2x
        _row("tensorized", 0.70, 0, params=1000, rank=0.1),  # 10 pt below: out
        _row("trl", 0.80, 10, rank=0.01),  # another method: ignored
    ]
    c = bench.iso_claim("x", "what", rows, ("tensorized",), dense, "params", 1.0, target=3.0)
    assert c["ours"] == 3000 and c["ratio"] == pytest.approx(3.0) and c["met"]
    assert [p["config"] for p in c["within_tolerance"]] == ["tensorized cp rank=0.33", "tensorized cp rank=0.5"]
    assert c["reading"].startswith("tensorized cp rank=0.33: 3.00x") and "target met" in c["reading"]


def test_results_file_claims_are_what_the_stored_summaries_give(bench):
    import json

    stored = json.loads((ROOT / "benchmarks" / "results" / "tensor_layers.json").read_text())
    recomputed = bench.build_claims(stored["details"]["summary"], stored["details"].get("latency"))
    assert [(c["id"], c["ours"], c["anchor"], c.get("met")) for c in recomputed] == [
        (c["id"], c["ours"], c["anchor"], c.get("met")) for c in stored["claims"]
    ]
    ids = {c["id"] for c in stored["claims"]}
    assert {
        "trl_head_param_ratio_at_iso_accuracy_small_head",
        "tensorized_net_param_ratio_at_iso_accuracy_small_cnn",
    } <= ids
    assert all("reading" in c for c in stored["claims"] if "iso_accuracy" in c["id"])


def test_docs_show_both_versions_with_the_computed_line_counts(bench):
    docs = (ROOT / "docs" / "tensor.md").read_text()
    by_hand, ours = bench._lines(bench.by_hand_tltorch), bench._lines(bench.with_trinity)
    match = re.search(r"tltorch by hand: (\d+) lines; `tensorize\(\)`: (\d+) lines", docs)
    assert match and (int(match[1]), int(match[2])) == (by_hand, ours)
    assert by_hand > 4 * ours
    for fn in (bench.by_hand_tltorch, bench.with_trinity):
        body = inspect.getsource(fn).split('"""')[-1] if fn.__doc__ else inspect.getsource(fn)
        for line in body.strip().splitlines():
            assert line.strip() in docs, f"docs/tensor.md lacks {line.strip()!r} of {fn.__name__}"


# ------------------------------------------------------------------------- prepare -> grid -> report, in miniature
def _run(bench, monkeypatch, *argv: str) -> None:
    monkeypatch.setattr(sys, "argv", ["tensor_layers.py", *argv])
    bench.main()


def _report(bench, monkeypatch, out, *argv: str) -> dict:
    """``report *argv`` into ``out`` (results and plot), returning the results file."""
    import json

    _run(bench, monkeypatch, "report", *argv, "--results-dir", str(out), "--plot-path", str(out / "p.png"))
    return json.loads((out / "tensor_layers.json").read_text())


def _jpeg(rgb: tuple[int, int, int]) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), rgb).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_stored_jpegs_decode_to_the_loader_pixels(bench, tmp_path):
    import io

    import numpy as np
    from PIL import Image

    jpegs = [_jpeg((200, 10, 10)), _jpeg((10, 200, 10)), _jpeg((10, 10, 200))]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in jpegs])])
    buffer = np.frombuffer(b"".join(jpegs), dtype=np.uint8)
    decoded = bench._decode_jpegs(buffer, offsets)
    expected = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in jpegs])
    assert decoded.shape == (3, 32, 32, 3) and np.array_equal(decoded, expected)
    path = tmp_path / "d.npz"
    np.savez(path, cifar10_train_jpeg=buffer, cifar10_train_jpeg_offsets=offsets, cifar10_train_y=np.arange(3))
    np.savez(path, **dict(np.load(path)), cifar10_test_x=decoded[:1], cifar10_test_y=np.arange(1))
    arrays = bench.load_arrays(str(path), "cifar10", None, None)
    assert np.array_equal(arrays["train_x"], expected) and set(arrays) == {"train_x", "train_y", "test_x", "test_y"}
    with pytest.raises(ValueError, match="holds no fashion_mnist_"):
        bench.load_arrays(str(path), "fashion_mnist", None, None)


def test_prepare_draws_seeded_class_stratified_subsets(bench, tmp_path):
    from tests.conftest import require_dataset

    require_dataset("fashion_mnist")
    import numpy as np

    out = tmp_path / "a.npz"
    info = bench.prepare_data(out, {"fashion_mnist": (3, 2)}, seed=0)
    assert info["sizes"] == {"fashion_mnist": {"train": 30, "test": 20}}
    with np.load(out) as d:
        assert sorted(d.files) == [f"fashion_mnist_{s}_{k}" for s in ("test", "train") for k in "xy"] + ["meta"]
        assert d["fashion_mnist_train_x"].shape == (30, 28, 28) and d["fashion_mnist_train_x"].dtype == np.uint8
        assert d["fashion_mnist_train_y"].tolist() == sorted(list(range(10)) * 3)  # stratified, class order
        first = {k: d[k] for k in d.files}
    assert bench._data_meta(str(out))["per_class"] == {"fashion_mnist": {"train": 3, "test": 2}}
    bench.prepare_data(tmp_path / "b.npz", {"fashion_mnist": (3, 2)}, seed=0)
    bench.prepare_data(tmp_path / "c.npz", {"fashion_mnist": (3, 2)}, seed=1)
    with np.load(tmp_path / "b.npz") as same, np.load(tmp_path / "c.npz") as other:
        assert all(np.array_equal(first[k], same[k]) for k in first)
        assert not np.array_equal(first["fashion_mnist_train_x"], other["fashion_mnist_train_x"])
    with pytest.raises(ValueError, match=r"sizes\[fashion_mnist\]\[test\]: 1001 images per class asked"):
        bench.prepare_data(tmp_path / "d.npz", {"fashion_mnist": (1, 1001)})


@pytest.mark.parametrize("bad", ["cifar=10/2", "cifar10=10", "cifar10=0/2", "cifar10=a/2"])
def test_prepare_sizes_are_checked(bench, bad):
    assert bench.parse_sizes(["cifar10=1500/300", "fashion_mnist=2/1"]) == {
        "cifar10": (1500, 300),
        "fashion_mnist": (2, 1),
    }
    with pytest.raises(ValueError, match=r"sizes: expected DATASET=TRAIN/TEST .* got '" + re.escape(bad)):
        bench.parse_sizes([bad])


def _tiny_fashion_mnist(tmp_path):
    """A random 64 / 20 image Fashion-MNIST-shaped ``.npz`` for the grid mode."""
    import numpy as np

    rng = np.random.default_rng(0)
    data = tmp_path / "tiny.npz"
    np.savez(
        data,
        fashion_mnist_train_x=rng.integers(0, 255, (64, 28, 28), dtype=np.uint8),
        fashion_mnist_train_y=np.arange(64) % 10,
        fashion_mnist_test_x=rng.integers(0, 255, (20, 28, 28), dtype=np.uint8),
        fashion_mnist_test_y=np.arange(20) % 10,
    )
    return data


def test_grid_runs_only_the_chosen_seeds_and_head_groups(bench, tmp_path, monkeypatch):
    """--seed-list 2 --head-groups trl-cp: the one cut-off job of a budgeted grid, re-run alone."""
    import json

    data, grid = _tiny_fashion_mnist(tmp_path), tmp_path / "grid"
    common = ["--epochs", "1", "--workers", "0", "--device", "cpu", "--datasets", "fashion_mnist"]
    only = ["--seed-list", "2", "--groups", "heads", "--head-groups", "trl-cp", "--trl-ranks", "1.0"]
    _run(bench, monkeypatch, "grid", "--data", str(data), "--out", str(grid), *common, *only)
    payload = json.loads((grid / "grid.json").read_text())
    assert [(r["seed"], r["method"], r["factorization"], r["rank"]) for r in payload["records"]] == [
        (2, "trl", "cp", 1.0)
    ]
    assert payload["meta"]["seeds"] == [2] and payload["meta"]["head_groups"] == ["trl-cp"]


def test_grid_then_report_end_to_end_in_miniature(bench, tmp_path, monkeypatch):
    """grid (in process, 1 epoch, random tiny data) -> grid.json -> report into tmp: every claim is written."""
    import json

    data = _tiny_fashion_mnist(tmp_path)
    grid = tmp_path / "grid"
    common = ["--epochs", "1", "--ft-epochs", "1", "--seeds", "1", "--workers", "0", "--device", "cpu"]
    ranks = ["--trl-ranks", "1.0", "--tcl-trl-ranks", "0.5", "--net-ranks", "0.5", "--net-factorizations", "cp"]
    _run(
        bench,
        monkeypatch,
        "grid",
        "--data",
        str(data),
        "--out",
        str(grid),
        "--datasets",
        "fashion_mnist",
        *common,
        *ranks,
    )
    payload = json.loads((grid / "grid.json").read_text())
    assert payload["meta"]["complete"] and payload["meta"]["net_ranks"] == [0.5]
    got = sorted((r["method"], r["factorization"], r["rank"]) for r in payload["records"])
    expected = [("dense", None, None), ("dense_ft", None, None), ("tcl+trl", "tucker", 0.5), ("tensorized", "cp", 0.5)]
    assert got == sorted(expected + [("trl", f, 1.0) for f in bench.FACTORIZATIONS])
    out = tmp_path / "results"
    results = _report(bench, monkeypatch, out, "--grid", str(grid / "grid.json"))
    assert (out / "p.png").stat().st_size > 0 and results["details"]["plot"] == str(out / "p.png")
    assert {c["id"] for c in results["claims"]} == {
        f"{name}_fashion_mnist"
        for name in (
            "trl_head_param_ratio_at_iso_accuracy_small_head",
            "tcl_trl_head_param_ratio_at_iso_accuracy_small_head",
            "tensorized_net_param_ratio_at_iso_accuracy_small_cnn",
        )
    }
    assert results["command"].startswith(f"python benchmarks/tensor_layers.py grid --data {data}")


def test_report_gives_the_measured_ratio_when_a_configuration_is_within_tolerance(bench, tmp_path, monkeypatch):
    """A grid whose less compressed ranks keep the accuracy: the claims are measured ratios, not 1.0."""
    import json

    records = []
    for seed in range(3):
        records += [
            _record("dense", 0.800, 114186, 20490, seed=seed),
            _record("dense_ft", 0.810, 114186, 20490, seed=seed),
            _record("trl", 0.797, 95617, 1921, "cp", 0.1, seed),  # 0.3 pt below, 10.7x: within 0.5
            _record("trl", 0.790, 94294, 598, "cp", 0.03, seed),  # 1.0 pt below: out
            _record("tensorized", 0.805, 57712, 10194, "cp", 0.5, seed),  # 0.5 pt below, 1.98x
            _record("tensorized", 0.790, 38589, 6698, "cp", 0.33, seed),  # 2.0 pt below: out
        ]
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"meta": {"tucker_linear_fixed": True}, "records": records}))
    out = tmp_path / "r"
    claims = {c["id"]: c for c in _report(bench, monkeypatch, out, "--grid", str(grid), "--command", "x")["claims"]}
    trl = claims["trl_head_param_ratio_at_iso_accuracy_small_head"]
    net = claims["tensorized_net_param_ratio_at_iso_accuracy_small_cnn"]
    assert (trl["ours"], trl["anchor"], trl["met"]) == (1921, 20490, True)
    assert trl["ratio"] == pytest.approx(20490 / 1921, rel=1e-3)
    assert (net["ours"], net["met"]) == (57712, False) and net["ratio"] == pytest.approx(114186 / 57712, rel=1e-3)
    assert net["reading"].startswith("tensorized cp rank=0.5: 1.98x") and "under the 3x target" in net["reading"]


def test_report_keeps_the_datasets_a_grid_did_not_run_from_an_earlier_results_file(bench, tmp_path, monkeypatch):
    """A CIFAR-10-only grid (no TCL heads) + --keep-from: Fashion-MNIST's claims come from the earlier file."""
    import json

    records = [_record("dense", 0.8, 114186, 20490), _record("trl", 0.7, 95617, 1921, "cp", 0.1)]
    records.append(_record("tensorized", 0.795, 57712, 10194, "cp", 0.5))
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"meta": {"tucker_linear_fixed": True}, "records": records}))
    earlier = tmp_path / "earlier.json"
    fmnist = [_row("dense", 0.89, 31370, params=50378, factorization=None, rank=None), _row("trl", 0.887, 3000)]
    old_cifar = [_row("dense", 0.7, 20490, factorization=None, rank=None)]
    earlier.write_text(
        json.dumps(
            {"details": {"grid_meta": {"device": "gpu"}, "summary": {"cifar10": old_cifar, "fashion_mnist": fmnist}}}
        )
    )
    out = tmp_path / "r"
    results = _report(bench, monkeypatch, out, "--grid", str(grid), "--keep-from", str(earlier), "--command", "x")
    details = results["details"]
    assert list(details["summary"]) == ["cifar10", "fashion_mnist"] and details["summary"]["fashion_mnist"] == fmnist
    assert details["kept_from"]["datasets"] == ["fashion_mnist"]
    assert details["grid_meta_by_dataset"] == {"fashion_mnist": {"device": "gpu"}}
    assert details["earlier_summary_replaced"] == {"cifar10": old_cifar}  # kept for reference, not in any claim
    claims = {c["id"]: c for c in results["claims"]}
    assert "tcl_trl_head_param_ratio_at_iso_accuracy_small_head" not in claims  # no TCL rows in this grid: no claim
    assert claims["trl_head_param_ratio_at_iso_accuracy_small_head_fashion_mnist"]["ours"] == 3000
    assert claims["trl_head_param_ratio_at_iso_accuracy_small_head"]["what"].startswith(
        "cifar10: dense flatten+Linear head params / TRL head params, most compressed TRL (CP, 1 ranks)"
    )


def test_report_reads_one_grid_per_dataset(bench, tmp_path, monkeypatch):
    import json

    paths = []
    for ds in ("cifar10", "fashion_mnist"):
        records = [{**_record("dense", 0.8, 1000, 100), "dataset": ds}, {**_record("trl", 0.8, 900, 10, "cp", 0.1)}]
        records[1]["dataset"] = ds
        paths.append(tmp_path / f"{ds}.json")
        meta = {"tucker_linear_fixed": True, "argv": f"grid --datasets {ds}", "device": "cpu", "seconds": 1.0}
        paths[-1].write_text(json.dumps({"meta": meta, "records": records}))
    out = tmp_path / "r"
    results = _report(bench, monkeypatch, out, "--grid", *map(str, paths))
    assert list(results["details"]["summary"]) == ["cifar10", "fashion_mnist"]
    assert [m["argv"] for m in results["details"]["grid_meta"]] == [
        "grid --datasets cifar10",
        "grid --datasets fashion_mnist",
    ]
    assert results["command"].startswith(
        "python benchmarks/tensor_layers.py grid --datasets cifar10 (cpu, 1 s); python benchmarks/tensor_layers.py grid"
    )
    claims = {c["id"]: c for c in results["claims"]}
    assert claims["trl_head_param_ratio_at_iso_accuracy_small_head_fashion_mnist"]["ratio"] == pytest.approx(10.0)
