"""benchmarks/equations.py: the results file carries the issue's claim ids, and a smoke run works."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "equations.json"
DELTAS = {"treelstm_vs_lstm_depth_extrapolation": 12.0, "numeric_data_gain_depth_extrapolation": 2.0}
RATIOS = {"treelstm_batching_speedup": 10.0, "treelstm_throughput_vs_pytorch_tree_lstm": 2.0}
MODELS = {
    "majority",
    "depth_size_probe",
    "numeric_check",
    "sympy_simplify",
    "bilstm",
    "treenn",
    "treelstm_sym",
    "treelstm_symnum",
}


def _bench():
    spec = importlib.util.spec_from_file_location("equations_bench", ROOT / "benchmarks" / "equations.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_results_file_has_the_named_claims_and_every_baseline():
    data = json.loads(RESULTS.read_text())
    claims = {c["id"]: c for c in data["claims"]}
    for name, target in DELTAS.items():
        c = claims[name]
        assert c["target_delta"] == target and c["delta"] == pytest.approx(c["ours"] - c["anchor"])
        assert c["met"] == (c["delta"] >= target)
    for name, target in RATIOS.items():
        c = claims[name]
        assert c["target"] == target and c["ratio"] == pytest.approx(c["ours"] / c["anchor"])
        assert c["met"] == (c["ratio"] >= target)
    details = data["details"]
    study = details["data_scale"]  # the claims read the data-scale study: the largest size with every seed of all three
    sizes = study["sizes"]
    read = sizes[str(study["claims_read"])]
    assert read["complete"] and study["claims_read"] == max(int(k) for k, r in sizes.items() if r["complete"])
    assert len({json.dumps(r["test_by_depth"]) for r in sizes.values()}) == 1  # one test set for every size
    # details.accuracy / per_seed / sizes / plot are that run (--summarize), not the earlier data file's
    ext = details["accuracy"]["extrapolation"]
    assert details["accuracy_source"]["data_scale_size"] == study["claims_read"] and set(details["accuracy"]) == {
        "extrapolation"
    }
    for name, net in read["networks"].items():
        assert ext[name]["mean"] == net["mean"] and ext[name]["by_depth"] == net["by_depth"]
        assert [r["acc"] for r in details["per_seed"]["extrapolation"][name].values()] == net["per_seed"]
    for name, mean in read["baselines"].items():  # by depth where the study stored it; else said so, nothing invented
        by_depth = read.get("baselines_by_depth", {}).get(name)
        want = {"mean": mean, "by_depth": by_depth} if by_depth else {"mean": mean, "by_depth": {"4": mean}}
        assert {k: v for k, v in ext[name].items() if k != "stored"} == want and ("stored" in ext[name]) == (
            not by_depth
        )
    assert details["sizes"]["extrapolation"]["train"] == read["train"] == 27014  # 12,800 per depth (stop 22)
    assert details["plot"] == "docs/img/equations.png"
    # the claims read the study's size, unless a rule moved them to an attached experiment (--attach-claims-move)
    source = {name: ext[name]["mean"] for name in ("bilstm", "treelstm_sym", "treelstm_symnum")}
    moved = details.get("claims_moved_to")
    if moved is not None:
        attached = details[moved]
        assert attached["claims_move"] and (ROOT / attached["rule"]).is_file()
        assert all((ROOT / d / "equations.json").is_file() for d in attached["run_dirs"])  # run folders committed
        assert attached["sizes"]["test_by_depth"] == read["test_by_depth"]  # the study's data file and test set
        assert attached["sizes"]["train"] == read["train"] and attached["train_per_depth"] == study["claims_read"]
        nets = {"treelstm_symnum" if n.startswith("treelstm_symnum") else n: v for n, v in attached["networks"].items()}
        assert {tuple(nets[n]["seeds"]) for n in source} == {(0, 1, 2)}
        source = {name: nets[name]["mean"] for name in source}
        assert (ROOT / attached["plot"]).is_file()
    assert claims["treelstm_vs_lstm_depth_extrapolation"]["ours"] == source["treelstm_sym"]
    assert claims["treelstm_vs_lstm_depth_extrapolation"]["anchor"] == source["bilstm"]
    assert claims["numeric_data_gain_depth_extrapolation"]["ours"] == source["treelstm_symnum"]
    assert "load_average" in details
    # the earlier data file's full table (4710 training equations), one copy, with its own claims, settings and plot
    earlier = details["accuracy_4710_train"]
    assert "extrapolation" not in earlier and earlier["sizes"]["extrapolation"]["train"] == 4710
    assert set(earlier["accuracy"]["same_depth"]) == MODELS
    old_ext = earlier["accuracy"]["extrapolation"]
    assert set(old_ext) >= MODELS
    assert {c["ours"] for c in earlier["claims"]} == {old_ext[m]["mean"] for m in ("treelstm_sym", "treelstm_symnum")}
    assert earlier["settings_extrapolation"]["seeds"] == [0, 1, 2]
    assert earlier["settings_extrapolation"]["patience"] == 3  # the same early-stopping rule for every network
    choice = earlier["symnum_choice"]["extrapolation"]
    assert choice["chosen"] == max(choice["val_mean"], key=choice["val_mean"].get)  # chosen on validation
    assert {s["variant"] for s in earlier["per_seed"]["extrapolation"]["treelstm_symnum"].values()} == {
        choice["chosen"]
    }
    assert (ROOT / earlier["plot"]).is_file() and earlier["plot"] != details["plot"]
    # an experiment beside the claims (--attach): its rule and run folders are committed, the claims do not read it
    head = details.get("numeric_value_head")
    if head is not None:
        assert (ROOT / head["rule"]).is_file() and all(
            (ROOT / d / "equations.json").is_file() for d in head["run_dirs"]
        )
        assert str(head["stored_size"]) in sizes  # the size it was compared with (the claims' size then)
        if moved is None:
            symnum = read["networks"]["treelstm_symnum"]["mean"]
            assert claims["numeric_data_gain_depth_extrapolation"]["ours"] == symnum
    # the restricted-domain split: every network and the numeric checks were scored on it (the fixed-epoch run)
    split = details["restricted_domain_split"]
    assert split["n"] >= 300 and split["true"] * 2 == split["n"] and "restricted_domain_equations" in split["recipe"]
    fixed = details["accuracy_fixed_epochs"]["extrapolation"]
    assert set(fixed) == MODELS | {"numeric_check_64"}
    for model in (
        "majority",
        "numeric_check",
        "numeric_check_64",
        "bilstm",
        "treenn",
        "treelstm_sym",
        "treelstm_symnum",
    ):
        assert 0 <= fixed[model]["restricted_domain"]["mean"] <= 100
    assert (ROOT / details["plot"]).is_file()


@pytest.mark.slow
def test_benchmark_smoke_run(tmp_path):
    bench = _bench()
    out = bench.main(
        [
            "--per-depth",
            "30",
            "--deep",
            "6",
            "--functions",
            "20",
            "--seeds",
            "0",
            "--epochs",
            "1",
            "--simplify-n",
            "3",
            "--throughput-batch",
            "16",
            "--repeats",
            "2",
            "--results-dir",
            str(tmp_path),
            "--plot",
            str(tmp_path / "p.png"),  # not the docs' plot
        ]
    )
    ids = {c["id"] for c in out["claims"]}
    assert set(DELTAS) <= ids and "treelstm_batching_speedup" in ids
    again = bench.main(
        ["--only", "throughput", "--throughput-batch", "16", "--repeats", "2", "--results-dir", str(tmp_path)]
    )
    assert {c["id"] for c in again["claims"]} == ids  # the accuracy claims are kept


@pytest.mark.slow
def test_seed_runs_merge_into_one_result(tmp_path):
    """One process per seed (``--seeds k --results-dir DIR_k``), then ``--merge DIR_0 DIR_1``: the pooled result
    holds both seeds, the restricted-domain scores, and claims recomputed from the pooled means."""
    bench = _bench()
    small = ["--only", "accuracy", "--protocols", "extrapolation", "--per-depth", "24", "--deep", "4"]
    small += ["--functions", "10", "--restricted", "4", "--epochs", "1", "--plot", str(tmp_path / "p.png")]
    for seed in (0, 1):
        bench.main(
            [
                *small,
                "--seeds",
                str(seed),
                "--simplify-n",
                "2" if seed == 0 else "0",
                "--results-dir",
                str(tmp_path / str(seed)),
            ]
        )
    out = bench.main(
        [
            "--merge",
            str(tmp_path / "0"),
            str(tmp_path / "1"),
            "--results-dir",
            str(tmp_path / "m"),
            "--plot",
            str(tmp_path / "p.png"),
        ]
    )
    ext = out["details"]["accuracy"]["extrapolation"]
    assert len(ext["treelstm_sym"]["per_seed"]) == 2 and ext["sympy_simplify"]["subsample"]["n"] == 2
    assert "restricted_domain" in ext["treelstm_sym"] and out["details"]["settings_extrapolation"]["seeds"] == [0, 1]
    claims = {c["id"]: c for c in out["claims"]}
    assert claims["treelstm_vs_lstm_depth_extrapolation"]["ours"] == pytest.approx(ext["treelstm_sym"]["mean"])


@pytest.mark.slow
def test_data_file_round_trip_keeps_the_symbolic_equations_and_balances_the_functions(tmp_path):
    """``--write-data FILE`` once, ``--data FILE --functions N`` per seed process: every symbolic equation, and the
    first N/2 true and N/2 false function evaluations."""
    bench = _bench()
    path = tmp_path / "data.jsonl"
    out = bench.main(["--write-data", str(path), "--per-depth", "6", "--deep", "2", "--functions", "12"])
    assert out["claims"] == [] and path.is_file()
    written, _ = bench.load_data(path, 12)
    eqs, report = bench.load_data(path, 6)
    assert report["function_true"] == report["function_false"] == 3
    assert [e.key() for e in eqs if e.kind == "symbolic"] == [e.key() for e in written if e.kind == "symbolic"]
    with pytest.raises(ValueError, match="fewer function evaluations than --functions 14"):
        bench.load_data(path, 14)


@pytest.mark.slow
def test_numeric_ablation_scores_every_variant_on_training_depths(tmp_path):
    from trinity_lightning.equations.generator import EquationGenerator, write_jsonl

    bench = _bench()
    path = write_jsonl(
        EquationGenerator(seed=0, max_depth=3).generate(per_depth=30, functions=24), tmp_path / "d.jsonl"
    )
    args = ["--only", "numeric_ablation", "--data", str(path), "--functions", "16", "--seeds", "0", "--epochs", "1"]
    out = bench.main([*args, "--results-dir", str(tmp_path)])
    ablation = out["details"]["numeric_ablation_validation"]
    assert set(bench.ABLATION) <= set(ablation) and ablation["n_functions"] == 16
    record = ablation["numeric_own_value0"][0]
    assert set(record["val_by_depth"]) == {1, 2, 3} and 0 <= record["unseen_functions_acc"] <= 100


def _eqs(n: int, kind: str = "symbolic"):
    from trinity_lightning.equations.grammar import parse_equation

    return [parse_equation(f"x + {i % 9} = {i % 9} + x", label=i % 2 == 0, kind=kind) for i in range(n)]  # type: ignore[arg-type]


def test_validation_split_is_fixed_disjoint_and_a_tenth():
    bench = _bench()
    train = list(range(50))
    fit, val = bench.split_validation(train, 0.1)
    assert len(val) == 5 and len(fit) == 45 and sorted(fit + val) == train
    assert bench.split_validation(train, 0.1) == (fit, val)  # the same for every model and seed


def test_symnum_variant_is_chosen_on_validation_only():
    """The variant of best mean validation accuracy becomes ``treelstm_symnum``, whatever its test accuracy."""
    bench = _bench()
    per_seed = {
        "extrapolation": {
            "treelstm_sym": {0: {"acc": 70.0, "val": 90.0}},
            "treelstm_symnum_decimal_tree": {0: {"acc": 99.0, "val": 91.0}, 1: {"acc": 99.0, "val": 91.0}},
            "treelstm_symnum_value_leaf": {0: {"acc": 60.0, "val": 92.0}, 1: {"acc": 60.0, "val": 91.0}},
        }
    }
    choice = bench.choose_symnum(per_seed)
    assert choice == {
        "extrapolation": {
            "chosen": "value_leaf",
            "val_mean": {"decimal_tree": 91.0, "value_leaf": 91.5},
            "seeds_compared": [0, 1],
        }
    }
    chosen = per_seed["extrapolation"]["treelstm_symnum"]
    assert chosen[0] == {"acc": 60.0, "val": 92.0, "variant": "value_leaf"} and set(chosen) == {0, 1}
    assert bench.choose_symnum({"extrapolation": {"treelstm_symnum": {0: {"acc": 1.0}}}}) == {}  # nothing to choose
    # a variant with fewer seeds: the means are over the seeds both have
    per_seed["extrapolation"]["treelstm_symnum_decimal_tree"] = {1: {"acc": 99.0, "val": 95.0}}
    assert bench.choose_symnum(per_seed)["extrapolation"]["chosen"] == "decimal_tree"


def test_take_functions_balances_in_file_order():
    bench = _bench()
    funs = _eqs(20, "function")
    got = bench.take_functions(funs, 6)
    assert [e.label for e in got].count(True) == 3 and [e.label for e in got].count(False) == 3
    chosen = {id(e) for e in got}
    assert [id(e) for e in got] == [id(e) for e in funs if id(e) in chosen] and got[:2] == funs[:2]


def test_networks_option_selects_the_trained_models():
    bench = _bench()
    parse = bench.argparse.ArgumentParser()
    args = parse.parse_args([])
    args.symnum_variants, args.networks = ["decimal_tree", "value_leaf"], None
    assert bench.neural_models(args) == [
        "bilstm",
        "treenn",
        "treelstm_sym",
        "treelstm_symnum_decimal_tree",
        "treelstm_symnum_value_leaf",
    ]
    args.networks = ["treelstm_symnum"]
    assert bench.neural_models(args) == ["treelstm_symnum_decimal_tree", "treelstm_symnum_value_leaf"]
    args.symnum_variants, args.networks = None, ["bilstm", "treelstm_symnum"]
    assert bench.neural_models(args) == ["bilstm", "treelstm_symnum"]


def test_early_stopping_restores_the_best_epoch(tmp_path):
    """``--patience``: validation accuracy after every epoch, training stops ``patience`` epochs after the best one,
    and the returned model carries the best epoch's weights (its validation accuracy equals the best recorded)."""
    import argparse

    import numpy as np

    bench = _bench()
    from trinity_lightning.equations.generator import EquationGenerator

    eqs = EquationGenerator(seed=0, max_depth=2).generate(per_depth=40)
    fit, val = bench.split_validation(eqs, 0.25)
    args = argparse.Namespace(hidden=8, lr=0.01, batch_size=16, patience=1, max_epochs=4, epochs=1)
    model, record = bench.train_network("treelstm_sym", fit, 0, args, val)
    history = record["val_history"]
    assert 1 <= record["epochs_run"] == len(history) <= 4 and record["val"] == max(history)
    assert record["best_epoch"] == int(np.argmax(history)) + 1
    assert record["epochs_run"] == 4 or record["epochs_run"] == record["best_epoch"] + 1  # patience 1
    restored = 100.0 * float(((model.predict_proba(val) > 0.5).numpy() == np.array([e.label for e in val])).mean())
    assert restored == pytest.approx(record["val"], abs=0.01)


def test_a_run_of_some_networks_has_no_claims_until_merged():
    """``--networks`` runs (one process per group of networks) write no plot and no claims: those need every model."""
    bench = _bench()
    some = {"extrapolation": {m: {} for m in ("majority", "depth_size_probe", "numeric_check", "bilstm")}}
    assert not bench.has_claim_models(some) and not bench.has_claim_models({})
    some["extrapolation"].update({m: {} for m in ("treelstm_sym", "treelstm_symnum")})
    assert bench.has_claim_models(some)


def _records(out, protocol="extrapolation"):
    """Per-seed records without the timings (which differ from run to run)."""
    drop = {"train_wall_s", "train_cpu_s"}
    return {
        m: {s: {k: v for k, v in r.items() if k not in drop} for s, r in seeds.items()}
        for m, seeds in out["details"]["per_seed"][protocol].items()
    }


def test_workers_give_the_same_records_and_networks_merge_model_by_model(tmp_path):
    """``--workers 2`` trains the networks in two forked processes and records exactly what one process records;
    a ``--networks`` run into an existing results file replaces those models only (every seed), keeps the others
    (named in the settings), and with ``--keep-previous-as`` keeps the replaced records, settings and claims."""
    bench = _bench()
    small = ["--only", "accuracy", "--protocols", "extrapolation", "--per-depth", "24", "--deep", "4"]
    small += ["--functions", "10", "--restricted", "0", "--simplify-n", "0", "--seeds", "0", "1"]
    small += ["--patience", "1", "--max-epochs", "2", "--plot", str(tmp_path / "p.png")]
    claim_nets = ["--networks", "bilstm", "treelstm_sym", "treelstm_symnum", "--symnum-variants", "value_leaf"]
    one = bench.main([*small, *claim_nets, "--results-dir", str(tmp_path / "one")])
    two = bench.main([*small, *claim_nets, "--workers", "2", "--results-dir", str(tmp_path / "two")])
    assert _records(one) == _records(two)
    assert {c["id"]: c["delta"] for c in one["claims"]} == {c["id"]: c["delta"] for c in two["claims"]}
    record = two["details"]["per_seed"]["extrapolation"]["treelstm_sym"][1]
    assert record["max_epochs"] == 2 and record["patience"] == 1 and 1 <= record["best_epoch"] <= 2

    # an existing results file with every network (the budget of 1 epoch), then the claim networks re-run
    base = tmp_path / "merge"
    first = bench.main([*small, "--max-epochs", "1", "--results-dir", str(base)])
    assert "treenn" in first["details"]["accuracy"]["extrapolation"]
    out = bench.main([*small, *claim_nets, "--results-dir", str(base), "--keep-previous-as", "accuracy_max1"])
    on_disk = json.loads((base / "equations.json").read_text())["details"]
    ext = on_disk["accuracy"]["extrapolation"]
    assert ext["treenn"] == first["details"]["accuracy"]["extrapolation"]["treenn"] | {
        "by_depth": ext["treenn"]["by_depth"]
    }
    assert ext["treelstm_sym"]["mean"] == pytest.approx(
        one["details"]["accuracy"]["extrapolation"]["treelstm_sym"]["mean"]
    )
    assert on_disk["per_seed"]["extrapolation"]["bilstm"]["0"]["max_epochs"] == 2  # replaced
    assert on_disk["per_seed"]["extrapolation"]["treenn"]["0"]["max_epochs"] == 1  # kept
    assert on_disk["settings_extrapolation"]["models_kept_from_previous_run"] == ["treenn"]
    kept = on_disk["accuracy_max1_details"]
    assert kept["per_seed"]["extrapolation"]["bilstm"]["0"]["max_epochs"] == 1
    assert kept["settings_extrapolation"]["max_epochs"] == 1
    assert {c["id"] for c in kept["claims"]} >= set(DELTAS)
    assert on_disk["accuracy_max1"]["extrapolation"]["treelstm_sym"] == json.loads(
        json.dumps(first["details"]["accuracy"]["extrapolation"]["treelstm_sym"])
    )
    claims = {c["id"]: c for c in out["claims"]}
    assert claims["treelstm_vs_lstm_depth_extrapolation"]["ours"] == pytest.approx(ext["treelstm_sym"]["mean"])


def test_hidden_size_is_chosen_per_network_on_validation_only():
    """Capacity selection: per network, the candidate size of best mean validation accuracy (over the seeds every
    candidate has; ties to the smaller size) becomes the network, whatever its test accuracy; every candidate's
    validation and test numbers are reported and the candidates stay in the records."""
    bench = _bench()
    per_seed = {
        "extrapolation": {
            "majority": {0: {"acc": 50.0}, 1: {"acc": 50.0}},
            "bilstm_h32": {0: {"acc": 90.0, "val": 80.0, "train_cpu_s": 1.0}, 1: {"acc": 90.0, "val": 82.0}},
            "bilstm_h64": {0: {"acc": 10.0, "val": 85.0, "train_cpu_s": 2.0}, 1: {"acc": 20.0, "val": 84.0}},
            "treelstm_sym_h32": {0: {"acc": 70.0, "val": 90.0}, 1: {"acc": 71.0, "val": 90.0}},
            "treelstm_sym_h64": {0: {"acc": 99.0, "val": 90.0}, 1: {"acc": 99.0, "val": 90.0}},
            # a candidate with one seed more: the means are over the seeds all candidates have
            "treelstm_symnum_value_leaf_h32": {0: {"acc": 1.0, "val": 70.0}, 1: {"acc": 1.0, "val": 70.0}},
            "treelstm_symnum_value_leaf_h64": {
                0: {"acc": 2.0, "val": 60.0},
                1: {"acc": 2.0, "val": 60.0},
                2: {"acc": 2.0, "val": 99.0},
            },
        }
    }
    out = bench.choose_hidden(per_seed)["extrapolation"]
    models = per_seed["extrapolation"]
    assert out["bilstm"]["chosen_hidden"] == 64 and out["bilstm"]["seeds_compared"] == [0, 1]
    assert out["bilstm"]["candidates"][32] == {
        "val_mean": 81.0,
        "val_per_seed": [80.0, 82.0],
        "test_mean": 90.0,
        "test_per_seed": [90.0, 90.0],
        "epochs_run": [None, None],
        "best_epoch": [None, None],
        "train_cpu_s": 1.0,
    }
    assert out["bilstm"]["candidates"][64]["test_mean"] == 15.0 and out["bilstm"]["candidates"][64]["val_mean"] == 84.5
    assert models["bilstm"][0] == {"acc": 10.0, "val": 85.0, "train_cpu_s": 2.0, "hidden": 64}
    assert out["treelstm_sym"]["chosen_hidden"] == 32  # a tie: the smaller size, not the better test accuracy
    assert models["treelstm_sym"][1]["acc"] == 71.0
    assert out["treelstm_symnum_value_leaf"]["chosen_hidden"] == 32
    assert out["treelstm_symnum_value_leaf"]["seeds_compared"] == [0, 1]
    assert "bilstm_h32" in models and "majority" not in out  # candidates kept; only candidates are chosen among
    # then the variant choice reads the chosen sizes' records
    assert bench.choose_symnum(per_seed)["extrapolation"]["chosen"] == "value_leaf"
    assert models["treelstm_symnum"][0]["hidden"] == 32
    assert bench.choose_hidden({"extrapolation": {"bilstm": {0: {"acc": 1.0, "val": 2.0}}}}) == {}
    with pytest.raises(ValueError, match="bilstm"):
        bench.choose_hidden({"p": {"bilstm_h8": {0: {"acc": 1, "val": 1}}, "bilstm_h16": {1: {"acc": 1, "val": 1}}}})


def test_hidden_candidates_run_selects_on_validation_and_keeps_the_records_format(tmp_path):
    """``--hidden 8 12``: every claim network trains at both sizes (the records of ``--hidden 8`` alone, named
    ``<network>_h8``), the size of best mean validation accuracy becomes the network, the claims read the chosen
    networks, and ``capacity_selection`` reports every candidate."""
    bench = _bench()
    small = ["--only", "accuracy", "--protocols", "extrapolation", "--per-depth", "24", "--deep", "4"]
    small += ["--functions", "10", "--restricted", "0", "--simplify-n", "0", "--seeds", "0", "1"]
    small += ["--patience", "1", "--max-epochs", "2", "--plot", str(tmp_path / "p.png")]
    small += ["--networks", "bilstm", "treelstm_sym", "treelstm_symnum", "--symnum-variants", "value_leaf"]
    out = bench.main([*small, "--hidden", "8", "12", "--results-dir", str(tmp_path / "grid")])
    alone = bench.main([*small, "--hidden", "8", "--results-dir", str(tmp_path / "h8")])
    grid, single = _records(out), _records(alone)
    for network in ("bilstm", "treelstm_sym", "treelstm_symnum_value_leaf"):
        assert grid[f"{network}_h8"] == single[network]
    selection = out["details"]["capacity_selection"]["extrapolation"]
    assert set(selection) == {"bilstm", "treelstm_sym", "treelstm_symnum_value_leaf"}
    for network, chosen in selection.items():
        h = chosen["chosen_hidden"]
        means = {size: c["val_mean"] for size, c in chosen["candidates"].items()}
        assert set(means) == {8, 12} and means[h] == max(means.values())
        assert grid[network] == {s: {**r, "hidden": h} for s, r in grid[f"{network}_h{h}"].items()}
        assert chosen["candidates"][h]["test_per_seed"] == [grid[network][s]["acc"] for s in (0, 1)]
    ext = out["details"]["accuracy"]["extrapolation"]
    claims = {c["id"]: c for c in out["claims"]}
    assert claims["treelstm_vs_lstm_depth_extrapolation"]["ours"] == pytest.approx(ext["treelstm_sym"]["mean"])
    assert claims["treelstm_vs_lstm_depth_extrapolation"]["anchor"] == pytest.approx(ext["bilstm"]["mean"])
    assert claims["numeric_data_gain_depth_extrapolation"]["ours"] == pytest.approx(ext["treelstm_symnum"]["mean"])
    settings = out["details"]["settings_extrapolation"]
    assert settings["hidden_candidates"] == [8, 12] and out["details"]["settings"]["hidden"] == [8, 12]
    assert alone["details"]["settings_extrapolation"]["hidden"] == 8 and "capacity_selection" not in alone["details"]
    with pytest.raises(SystemExit):  # a selection needs validation
        bench.main(["--only", "accuracy", "--hidden", "8", "12", "--results-dir", str(tmp_path / "x")])


def test_train_subsets_are_nested_balanced_per_depth_and_in_split_order():
    """``--train-per-depth N``: the first N/2 true and N/2 false equations of every depth of the training part, in
    its order; a smaller size's set is a prefix-per-depth of a larger one's (nested), depth 1 takes what it has."""
    from trinity_lightning.equations.generator import EquationGenerator

    bench = _bench()
    eqs = EquationGenerator(seed=0, max_depth=3).generate(per_depth={1: 20, 2: 60, 3: 60})
    train = bench.protocols(eqs)["extrapolation"]["train"]
    small, large = bench.subsample_train(train, 10), bench.subsample_train(train, 40)
    assert set(map(id, small)) <= set(map(id, large))
    for subset, n in ((small, 10), (large, 40)):
        assert [e for e in train if any(e is s for s in subset)] == subset  # the split's order
        counts = Counter((e.depth, e.label) for e in subset)
        available = Counter((e.depth, e.label) for e in train)
        for depth in (1, 2, 3):  # balanced at every depth, depth 1 limited by its scarcer label
            k = min(n // 2, available[depth, True], available[depth, False])
            assert counts[depth, True] == counts[depth, False] == k
    assert min(available[1, True], available[1, False]) < 20  # depth 1 is the short one here
    with pytest.raises(ValueError, match="--train-per-depth"):
        bench.subsample_train(train, 1)


def test_scale_study_claims_read_the_largest_complete_size(tmp_path):
    """A data-scale study: one data file, runs at two ``--train-per-depth`` sizes (the larger one without the
    symbolic + numeric network: incomplete), pooled with ``--scale-study``: the test set is the same at every size,
    the claims read the largest size where all three networks have every seed, and the replaced claims are kept."""
    bench = _bench()
    from _results import write_results  # benchmarks/ is on the path once _bench() ran

    data = tmp_path / "data.jsonl"
    bench.main(["--write-data", str(data), "--per-depth", "40", "--depth4", "10", "--deep", "3", "--functions", "24"])
    common = ["--only", "accuracy", "--protocols", "extrapolation", "--data", str(data), "--restricted", "0"]
    common += ["--simplify-n", "0", "--seeds", "0", "1", "--patience", "1", "--max-epochs", "1", "--hidden", "8"]
    common += ["--plot", str(tmp_path / "p.png")]
    nets = ["--networks", "bilstm", "treelstm_sym", "treelstm_symnum", "--symnum-variants", "value_leaf"]
    small = bench.main(
        [*common, *nets, "--train-per-depth", "8", "--functions", "8", "--results-dir", str(tmp_path / "a")]
    )
    large = bench.main(
        [*common, *nets[:3], "--train-per-depth", "20", "--functions", "20", "--results-dir", str(tmp_path / "b")]
    )
    sizes = small["details"]["sizes"]["extrapolation"], large["details"]["sizes"]["extrapolation"]
    assert sizes[0]["test_by_depth"] == sizes[1]["test_by_depth"] and sizes[0]["test_by_depth"][4] == 10
    assert sizes[0]["train"] < sizes[1]["train"] and sizes[1]["train_by_depth"][2] == 20
    previous = [{"id": i, "ours": 1.0, "anchor": 0.0, "delta": 1.0, "target_delta": 1.0, "met": True} for i in DELTAS]
    base = tmp_path / "base"
    old = {"accuracy": {"extrapolation": {"bilstm": {"mean": 1.0}}}, "sizes": {"extrapolation": {"train": 99}}}
    old["data_scale"] = {"rule": "an older rule", "history": ["written before the runs"]}
    write_results("equations", previous, old, results_dir=base)
    with pytest.raises(SystemExit):  # not a --train-per-depth run
        bench.main(["--scale-study", str(base), "--results-dir", str(tmp_path / "x")])
    out = bench.main(
        [
            "--scale-study",
            str(tmp_path / "a"),
            str(tmp_path / "b"),
            "--seeds",
            "0",
            "1",
            "--results-dir",
            str(base),
            "--keep-previous-as",
            "accuracy_prev",
            "--scale-plot",
            str(tmp_path / "scale.png"),
            "--plot",
            str(tmp_path / "p.png"),  # not the docs' plot
        ]
    )
    study = out["details"]["data_scale"]
    assert study["claims_read"] == 8 and study["rule"] == bench.SCALE_RULE and (tmp_path / "scale.png").is_file()
    assert study["sizes"][8]["complete"] and not study["sizes"][20]["complete"]
    assert [p["train_per_depth"] for p in study["curve"]] == [8, 20] and "gap_numeric" not in study["sizes"][20]
    chosen = study["sizes"][8]
    assert chosen["networks"]["treelstm_symnum"]["variant"] == "value_leaf" and chosen["functions"] == 8
    ext = small["details"]["accuracy"]["extrapolation"]
    assert chosen["networks"]["treelstm_sym"]["per_seed"] == ext["treelstm_sym"]["per_seed"]
    assert chosen["gap_treelstm_vs_lstm"]["mean"] == pytest.approx(ext["treelstm_sym"]["mean"] - ext["bilstm"]["mean"])
    claims = {c["id"]: c for c in out["claims"]}
    assert claims["treelstm_vs_lstm_depth_extrapolation"]["ours"] == pytest.approx(ext["treelstm_sym"]["mean"])
    assert claims["numeric_data_gain_depth_extrapolation"]["anchor"] == pytest.approx(ext["treelstm_sym"]["mean"])
    assert "8 per depth" in claims["numeric_data_gain_depth_extrapolation"]["what"]
    on_disk = json.loads((base / "equations.json").read_text())["details"]
    kept = on_disk["accuracy_prev"]  # the earlier table, its claims and sizes: one copy, under the key
    assert [c["ours"] for c in kept["claims"]] == [1.0, 1.0]
    assert kept["accuracy"] == old["accuracy"] and kept["sizes"] == old["sizes"] and "extrapolation" not in kept
    # details.accuracy, per_seed, sizes and the plot are the size the claims read
    assert on_disk["accuracy"]["extrapolation"]["treelstm_sym"]["per_seed"] == ext["treelstm_sym"]["per_seed"]
    assert on_disk["sizes"]["extrapolation"]["train"] == chosen["train"]
    assert on_disk["accuracy_source"]["data_scale_size"] == 8 and (tmp_path / "p.png").is_file()
    assert (tmp_path / "p_prev.png").is_file() and kept["plot"].endswith("p_prev.png")
    by_depth = ext["majority"]["by_depth"]  # the study now stores the baselines by depth too
    assert on_disk["accuracy"]["extrapolation"]["majority"]["by_depth"] == {str(d): v for d, v in by_depth.items()}
    assert on_disk["data_scale"]["history"] == ["written before the runs"]  # notes kept, the rule is the code's
    assert on_disk["data_scale"]["rule"] == bench.SCALE_RULE
    # --summarize rebuilds the same tables from the stored study (no training) and writes the same file again
    before = json.loads((base / "equations.json").read_text())
    bench.main(["--summarize", *paths(base, tmp_path, "accuracy_prev")])
    first = (base / "equations.json").read_text()
    after = json.loads(first)
    assert after["claims"] == before["claims"]
    for key in ("accuracy", "per_seed", "sizes", "accuracy_prev", "accuracy_source"):
        assert after["details"][key] == before["details"][key]
    bench.main(["--summarize", *paths(base, tmp_path, "accuracy_prev")])
    assert (base / "equations.json").read_text() == first


def paths(results, tmp, keep):
    return [
        "--results-dir",
        str(results),
        "--keep-previous-as",
        keep,
        "--plot",
        str(tmp / "p.png"),
        "--scale-plot",
        str(tmp / "scale.png"),
    ]


def test_summarize_moves_the_earlier_table_under_its_key_once_and_rebuilds_the_claims_run(tmp_path):
    """``--summarize`` on a results file whose claims read a data-scale study but whose details.accuracy is still an
    earlier run's table (the state of the committed file before this option): the table, per-seed records, sizes and
    settings move under --keep-previous-as (the copy already there dropped: it equals them), details.accuracy becomes
    the study's size the claims read (baselines at depth 4 only, marked), both plots are drawn, the claims recomputed
    equal the stored ones, and a second run writes the same bytes."""
    bench = _bench()
    from _results import write_results

    net = {
        "seeds": [0, 1],
        "mean": 80.0,
        "std": 1.0,
        "per_seed": [79.0, 81.0],
        "by_depth": {4: 80.0, 5: 60.0},
        "by_depth_per_seed": {4: [79.0, 81.0], 5: [59.0, 61.0]},
        "val_per_seed": [95.0, 96.0],
        "val_mean": 95.5,
        "best_epoch": [3, 4],
        "epochs_run": [6, 7],
        "train_cpu_s": [9.5, 9.0],
    }
    nets = {"bilstm": {**net, "mean": 70.0}, "treelstm_sym": net, "treelstm_symnum": {**net, "variant": "value_leaf"}}
    size = {
        "train_per_depth": 8,
        "train": 20,
        "test": 9,
        "functions": 10,
        "baselines": {"majority": 50.0},
        "networks": nets,
        "complete": True,
    }
    study = {"claims_read": 8, "seeds": [0, 1], "sizes": {8: size}}
    claims = bench.scale_claims(study)
    earlier_ext = {
        "bilstm": {"mean": 60.0, "by_depth": {1: 90.0, 4: 60.0}},
        "treenn": {"mean": 55.0, "by_depth": {4: 55.0}},
        "treelstm_sym": {"mean": 66.0, "by_depth": {4: 66.0}},
    }
    details = {
        "throughput": {"x": 1},
        "accuracy": {"extrapolation": earlier_ext, "same_depth": {"bilstm": {"mean": 70.0, "by_depth": {4: 70.0}}}},
        "per_seed": {"extrapolation": {"bilstm": {0: {"acc": 60.0}}}},
        "sizes": {"extrapolation": {"train": 99}},
        "settings_extrapolation": {"patience": 3},
        "plot": "docs/img/equations.png",
        "results_file_note": "the tables are the earlier run's",
        "data_scale": study,
        "accuracy_old": {"claims": [{"id": "x"}], "extrapolation": {"bilstm": earlier_ext["bilstm"]}},
    }
    write_results("equations", claims, details, results_dir=tmp_path, command="python the-run")
    out = bench.main(["--summarize", *paths(tmp_path, tmp_path, "accuracy_old")])
    on_disk = json.loads((tmp_path / "equations.json").read_text())
    d = on_disk["details"]
    assert on_disk["claims"] == json.loads(json.dumps(claims)) and on_disk["command"] == "python the-run"
    kept = d["accuracy_old"]
    assert kept["claims"] == [{"id": "x"}] and "extrapolation" not in kept  # the equal copy dropped
    assert kept["accuracy"]["extrapolation"]["treenn"]["mean"] == 55.0 and "same_depth" in kept["accuracy"]
    assert kept["settings_extrapolation"] == {"patience": 3} and kept["sizes"] == {"extrapolation": {"train": 99}}
    assert kept["results_file_note_before_summarize"] == "the tables are the earlier run's"
    assert "settings_extrapolation" not in d and "results_file_note" not in d and d["throughput"] == {"x": 1}
    ext = d["accuracy"]["extrapolation"]
    assert set(d["accuracy"]) == {"extrapolation"} and ext["bilstm"]["mean"] == 70.0
    assert ext["majority"]["by_depth"] == {"4": 50.0} and "depth-4 mean only" in ext["majority"]["stored"]
    assert d["per_seed"]["extrapolation"]["treelstm_symnum"]["1"] == {
        "acc": 81.0,
        "by_depth": {"4": 81.0, "5": 61.0},
        "val": 96.0,
        "best_epoch": 4,
        "epochs_run": 7,
        "train_cpu_s": 9.0,
        "variant": "value_leaf",
    }
    assert d["sizes"] == {"extrapolation": {"train_per_depth": 8, "train": 20, "functions": 10, "test": 9}}
    assert (tmp_path / "p.png").is_file() and (tmp_path / "p_old.png").is_file() and (tmp_path / "scale.png").is_file()
    assert "accuracy_old" in d["accuracy_source"]["note"] and out["claims"] == on_disk["claims"]
    first = (tmp_path / "equations.json").read_bytes()
    bench.main(["--summarize", *paths(tmp_path, tmp_path, "accuracy_old")])
    assert (tmp_path / "equations.json").read_bytes() == first
    # a copy that differs from the earlier table is not dropped
    details["accuracy_old"]["extrapolation"] = {"bilstm": {"mean": 1.0}}
    write_results("equations", claims, details, results_dir=tmp_path / "b")
    bench.main(["--summarize", *paths(tmp_path / "b", tmp_path, "accuracy_old")])
    kept = json.loads((tmp_path / "b" / "equations.json").read_text())["details"]["accuracy_old"]
    assert kept["extrapolation_as_kept"] == {"bilstm": {"mean": 1.0}}


def test_attach_records_an_experiment_beside_the_claims_and_compares_validation_per_seed(tmp_path):
    """``--attach``: runs of one network at the claims' data-scale size, pooled over seeds, go under the key; the
    claims, tables, date, machine and command stay; a note already under the key stays; validation is compared per
    seed with the stored networks of that size (the seeds both have)."""
    bench = _bench()
    from _results import write_results

    def rec(acc, val):
        return {
            "acc": acc,
            "by_depth": {4: acc, 5: 55.0},
            "weak_domain": acc,
            "val": val,
            "best_epoch": 2,
            "epochs_run": 5,
            "train_cpu_s": 7.0,
            "variant": "value_leaf_vw01",
        }

    for seed, acc, val in ((0, 80.0, 97.0), (1, 82.0, 96.0)):
        run = {
            "per_seed": {
                "extrapolation": {
                    "treelstm_symnum_value_leaf_vw01": {seed: rec(acc, val)},
                    "treelstm_symnum": {seed: rec(acc, val)},  # the chosen variant's copy
                    "majority": {seed: {"acc": 50.0, "by_depth": {4: 50.0}}},
                }
            },
            "settings": {"train_per_depth": 8},
            "sizes": {"extrapolation": {"train": 20}},
            "settings_extrapolation": {"patience": 3},
            "accuracy_cpu_s_extrapolation": 10.0,
        }
        write_results("equations", [], run, results_dir=tmp_path / f"s{seed}", command=f"run {seed}")
    stored = {"seeds": [0, 1, 2], "per_seed": [81.0, 81.0, 81.0], "val_per_seed": [96.5, 97.2, 97.1]}
    claims = [{"id": "numeric_data_gain_depth_extrapolation", "ours": 1.0}]
    details = {
        "data_scale": {"claims_read": 8, "sizes": {"8": {"networks": {"treelstm_symnum": stored}}}},
        "numeric_value_head": {"rule": "rule.md"},
    }
    write_results("equations", claims, details, results_dir=tmp_path, command="the run")
    with pytest.raises(SystemExit, match="--attach-as"):
        bench.main(["--attach", str(tmp_path / "s0"), "--results-dir", str(tmp_path)])
    bench.main(
        [
            "--attach",
            str(tmp_path / "s0"),
            str(tmp_path / "s1"),
            "--attach-as",
            "numeric_value_head",
            "--results-dir",
            str(tmp_path),
        ]
    )
    out = json.loads((tmp_path / "equations.json").read_text())
    assert out["claims"] == claims and out["command"] == "the run"
    with pytest.raises(SystemExit, match="--attach-rule"):
        bench.main(
            [
                "--attach",
                str(tmp_path / "s0"),
                "--attach-as",
                "k",
                "--attach-rule",
                str(tmp_path / "no.md"),
                "--results-dir",
                str(tmp_path),
            ]
        )
    record = out["details"]["numeric_value_head"]
    assert record["rule"] == "rule.md" and record["runs"] == ["run 0", "run 1"] and record["cpu_s"] == 20.0
    net = record["networks"]["treelstm_symnum_value_leaf_vw01"]
    assert set(record["networks"]) == {"treelstm_symnum_value_leaf_vw01"}  # no baselines, no copy
    assert net["seeds"] == [0, 1] and net["mean"] == 81.0 and net["val_mean"] == 96.5
    assert net["variant"] == "value_leaf_vw01" and net["by_depth"] == {"4": 81.0, "5": 55.0}
    assert net["val_minus_stored"]["treelstm_symnum"] == {"seeds": [0, 1], "per_seed": [0.5, -1.2], "mean": -0.35}


def _fake_scale_run(size: int, seeds: list[int], accs: dict[str, float], train: int = 20) -> dict:
    """The details of a ``--train-per-depth`` accuracy run, made without training (every seed the same numbers)."""
    net = lambda acc, s: {  # noqa: E731
        "acc": acc + s,
        "by_depth": {4: acc + s, 5: acc - 10},
        "val": 90.0 + s,
        "best_epoch": 2,
        "epochs_run": 5,
        "train_cpu_s": 1.5,
    }
    per_seed = {name: {s: net(acc, s) for s in seeds} for name, acc in accs.items()}
    if "treelstm_symnum_value_leaf" in per_seed:
        for r in per_seed["treelstm_symnum_value_leaf"].values():
            r["functions"] = size
    per_seed["majority"] = {s: {"acc": 50.0, "by_depth": {4: 50.0, 5: 50.0}} for s in seeds}
    return {
        "per_seed": {"extrapolation": per_seed},
        "settings": {"train_per_depth": size},
        "settings_extrapolation": {"val_fraction": 0.1},
        "sizes": {"extrapolation": {"train": train, "train_by_depth": {2: train}, "test": 9, "test_by_depth": {4: 9}}},
        "accuracy_cpu_s_extrapolation": 3.0,
        "accuracy_wall_s_extrapolation": 4.0,
        "load_average_after_extrapolation": [1.0, 1.0, 1.0],
    }


def test_scale_add_pools_new_seeds_with_a_stored_size_and_moves_the_claims(tmp_path):
    """``--scale-add``: runs of a size the stored study has (seed 0 only, its run folder gone) add seed 1; the size
    becomes complete, the claims move to it (the largest complete size), the stored seed's records are kept
    unchanged, the baselines by depth come from the new run, and a run on another data file (different split) is
    refused."""
    bench = _bench()
    from _results import write_results

    nets = {"bilstm": 70.0, "treelstm_sym": 80.0, "treelstm_symnum_value_leaf": 79.0}
    small = _fake_scale_run(4, [0, 1], nets, train=10)
    large0 = _fake_scale_run(8, [0], {"bilstm": 72.0, "treelstm_sym": 85.0, "treelstm_symnum_value_leaf": 86.0})
    sizes = {k: bench.scale_size_record([run], [0, 1]) for k, run in ((4, small), (8, large0))}
    study = {"rule": bench.SCALE_RULE, "seeds": [0, 1], "sizes": sizes, "curve": bench.scale_curve(sizes)}
    study.update({"claims_read": 4, "runs": ["s4", "s8_seed0"], "history": ["written before the runs"]})
    claims = bench.scale_claims(study)
    base = tmp_path / "base"
    write_results("equations", claims, {"data_scale": study}, results_dir=base)
    assert {c["id"]: c["delta"] for c in claims}["treelstm_vs_lstm_depth_extrapolation"] == pytest.approx(10.0)

    new = tmp_path / "s8_seed1"
    write_results(
        "equations",
        [],
        _fake_scale_run(8, [1], {"bilstm": 71.0, "treelstm_sym": 84.0, "treelstm_symnum_value_leaf": 83.0}),
        results_dir=new,
    )
    wrong = tmp_path / "s8_other_file"
    write_results("equations", [], _fake_scale_run(8, [1], nets, train=21), results_dir=wrong)
    with pytest.raises(SystemExit, match="not the study's data file"):
        bench.main(["--scale-add", str(wrong), *paths(base, tmp_path, "accuracy_prev")])

    out = bench.main(["--scale-add", str(new), *paths(base, tmp_path, "accuracy_prev")])
    study = out["details"]["data_scale"]
    eight = bench._int_keys(study["sizes"])[8]
    assert study["claims_read"] == 8 and eight["complete"] and study["history"] == ["written before the runs"]
    assert eight["networks"]["bilstm"]["per_seed"] == [72.0, 72.0]  # seed 0 stored (72 + 0), seed 1 new (71 + 1)
    assert eight["networks"]["treelstm_symnum"]["per_seed"] == [86.0, 84.0]
    assert eight["gap_treelstm_vs_lstm"]["per_seed"] == [13.0, 13.0] and eight["gap_numeric"]["per_seed"] == [1.0, -1.0]
    assert eight["baselines_by_depth"]["majority"] == {4: 50.0, 5: 50.0}  # from the new run
    assert study["runs"] == ["s4", "s8_seed0", "s8_seed1"] and study["added"][0]["claims_read_before"] == 4
    assert "the claims read 8" in study["status"] and "4, 8 per depth complete" in study["status"]
    got = {c["id"]: c for c in out["claims"]}
    assert got["treelstm_vs_lstm_depth_extrapolation"]["delta"] == pytest.approx(13.0)
    assert got["numeric_data_gain_depth_extrapolation"]["delta"] == pytest.approx(0.0)
    assert out["details"]["accuracy_source"]["data_scale_size"] == 8
    assert out["details"]["accuracy"]["extrapolation"]["majority"]["by_depth"] == {4: 50.0, 5: 50.0}
    assert [p["train_per_depth"] for p in study["curve"]] == [4, 8] and study["curve"][1]["complete"]


def test_attach_claims_move_reads_both_claims_from_the_attached_experiment_and_summarize_keeps_them(tmp_path):
    """``--attach ... --attach-claims-move``: with a rule and every claim network on the same (>= 3) seeds, both
    accuracy claims read the attached runs (the comparator named in their text); a later ``--summarize`` keeps them;
    an incomplete experiment or a missing rule is refused; ``--attach-plot`` draws its accuracy by depth."""
    bench = _bench()
    from _results import write_results

    def rec(acc):
        return {"acc": acc, "by_depth": {4: acc, 5: 55.0}, "val": 97.0, "best_epoch": 2, "epochs_run": 5}

    accs = {"bilstm": 70.0, "treelstm_sym": 83.0, "treelstm_symnum_value_leaf": 86.0}
    for seed in (0, 1, 2):
        per_seed = {name: {seed: rec(acc + seed)} for name, acc in accs.items()}
        per_seed["treelstm_symnum"] = per_seed["treelstm_symnum_value_leaf"]  # the chosen variant's copy
        run = {
            "per_seed": {"extrapolation": per_seed},
            "settings": {"train_per_depth": 8, "comparator": "dot"},
            "sizes": {"extrapolation": {"train": 20}},
        }
        write_results("equations", [], run, results_dir=tmp_path / f"s{seed}", command=f"run {seed}")
    stored = [
        {"id": "treelstm_vs_lstm_depth_extrapolation", "ours": 1.0, "anchor": 1.0},
        {"id": "numeric_data_gain_depth_extrapolation", "ours": 1.0, "anchor": 1.0},
        {"id": "treelstm_batching_speedup", "ours": 5.0},
    ]
    earlier = {"extrapolation": {"bilstm": {"mean": 1.0, "by_depth": {4: 1.0}}}}
    write_results("equations", stored, {"data_scale": {}, "accuracy": earlier}, results_dir=tmp_path, command="x")
    rule = tmp_path / "rule.md"
    rule.write_text("move whatever the result")
    dirs = [str(tmp_path / f"s{s}") for s in (0, 1, 2)]
    base = ["--attach", *dirs, "--attach-as", "comparator_dot", "--results-dir", str(tmp_path)]
    with pytest.raises(SystemExit, match="needs --attach-rule"):
        bench.main([*base, "--attach-claims-move"])
    with pytest.raises(SystemExit, match="cannot carry the claims"):
        bench.main([*base[:1], dirs[0], *base[4:], "--attach-rule", str(rule), "--attach-claims-move"])
    bench.main([*base, "--attach-rule", str(rule), "--attach-claims-move", "--attach-plot", str(tmp_path / "d.png")])
    out = json.loads((tmp_path / "equations.json").read_text())
    claims = {c["id"]: c for c in out["claims"]}
    assert claims["treelstm_vs_lstm_depth_extrapolation"]["delta"] == pytest.approx(13.0)
    assert claims["numeric_data_gain_depth_extrapolation"]["delta"] == pytest.approx(3.0)
    assert "the official code's Equality node" in claims["treelstm_vs_lstm_depth_extrapolation"]["what"]
    assert claims["treelstm_batching_speedup"]["ours"] == 5.0  # the other claims stay
    d = out["details"]
    assert d["claims_moved_to"] == "comparator_dot" and d["comparator_dot"]["claims_move"] is True
    assert d["comparator_dot"]["comparator"] == "dot" and (tmp_path / "d.png").is_file()
    bench.main(["--summarize", "--results-dir", str(tmp_path), "--plot", str(tmp_path / "p.png")])
    again = {c["id"]: c for c in json.loads((tmp_path / "equations.json").read_text())["claims"]}
    assert again["treelstm_vs_lstm_depth_extrapolation"] == claims["treelstm_vs_lstm_depth_extrapolation"]
