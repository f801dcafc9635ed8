"""``benchmarks/signsgd_byzantine.py``: the accuracy-vs-step curve each run records and the paired gap to the clean
vote that the docs' convergence table reads."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import signsgd_byzantine as byz  # noqa: E402
from _harness import trainer  # noqa: E402


def test_curves_average_per_step_and_pair_each_vote_with_the_clean_vote_of_its_seed() -> None:
    runs = [
        {"method": "vote", "adversaries": 0, "seed": 0, "curve": [[10, 40.0], [20, 50.0]]},
        {"method": "vote", "adversaries": 0, "seed": 1, "curve": [[10, 44.0], [20, 54.0]]},
        {"method": "vote", "adversaries": 1, "seed": 0, "curve": [[10, 30.0], [20, 49.0]]},
        {"method": "vote", "adversaries": 1, "seed": 1, "curve": [[10, 40.0], [20, 53.0]]},
        {"method": "sgd", "adversaries": 1, "seed": 0, "curve": [[10, 10.0], [20, 10.0]]},
    ]
    out = byz.curves(runs)
    assert out["vote_0_adversaries"] == {"steps": [10, 20], "mean": [42.0, 52.0]}
    assert out["vote_1_adversaries"]["mean"] == [35.0, 51.0]
    assert out["vote_1_adversaries"]["gap_to_clean"] == [-7.0, -1.0]  # (30-40 + 40-44) / 2, (49-50 + 53-54) / 2
    assert "gap_to_clean" not in out["sgd_1_adversaries"] and "vote_2_adversaries" not in out


def test_simulated_workers_score_the_test_subset_at_the_requested_steps() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(7 * 8, 3, 4, 4), torch.randint(0, 10, (7 * 8,))
    shards = byz.WorkerShards(x, y, workers=7, seed=0)
    loader = DataLoader(shards, batch_size=2, shuffle=False, drop_last=True)  # 4 steps per epoch
    module = byz.SimulatedWorkers(nn.Sequential(nn.Flatten(), nn.Linear(48, 10)), "vote", 3, total_steps=4)
    module.eval_data, module.eval_at = (x[:20], y[:20]), {2, 4}
    trainer(max_epochs=1, accelerator="cpu", devices=1, limit_val_batches=0).fit(module, loader)
    assert [step for step, _ in module.curve] == [2, 4]
    assert all(0.0 <= acc <= 100.0 for _, acc in module.curve)
    assert module.signum_lr == 1e-3 and module.signum_wd == 0.0  # the paper's Signum settings are the defaults


def test_cpu_scale_is_the_papers_batch_over_the_150_steps_of_the_batch_64_run() -> None:
    def steps(train_size: int, batch: int, epochs: int) -> int:  # as run_one: drop_last over each worker's shard
        return (train_size // byz.WORKERS // batch) * epochs

    cpu = byz.SCALES["cpu"]
    assert cpu["batch"] == 128 and cpu["seeds"] == [0, 1, 2]
    assert steps(cpu["train_size"], cpu["batch"], cpu["epochs"]) == 150 == steps(7000, 64, 10)
    assert all("batch" in scale for scale in byz.SCALES.values())


def _results(batch: int, delta: float, reported: dict | None = None) -> dict:
    protocol = {"workers": 7, "train_size": 7000 * batch // 64, "test_size": 2000, "epochs": 10}
    protocol |= {"batch_per_worker": batch, "vote": "Signum lr 0.001", "steps": [150]}
    details = {"protocol": protocol, "accuracy": {"vote_0_adversaries": {"mean": 43.0}}, "docstring": "..."}
    if reported is not None:
        details["reported"] = reported
    claim = {"id": "byzantine_1_of_7_accuracy_delta", "ours": 42.0, "anchor": 43.0, "delta": delta, "met": False}
    return {"command": f"python x.py --batch {batch}", "date": "2026-12-03", "claims": [claim], "details": details}


def test_reported_runs_keep_a_replaced_run_of_another_protocol_with_its_claims_as_rows() -> None:
    old = _results(64, -1.15, reported={"batch_32_62_steps": {"command": "stop 15"}})
    new_protocol = _results(128, 0.0)["details"]["protocol"]
    reported = byz.reported_runs(old, new_protocol)
    assert sorted(reported) == ["batch_32_62_steps", "batch_64_150_steps"]  # the older entry is carried over
    entry = reported["batch_64_150_steps"]
    assert entry["claims_as_reported_rows"] == [old["claims"][0]]
    assert entry["protocol"]["batch_per_worker"] == 64 and entry["accuracy"] == old["details"]["accuracy"]
    assert entry["command"] == "python x.py --batch 64" and "docstring" not in entry and "reported" not in entry


def test_reported_runs_rerunning_the_same_protocol_replaces_it_and_keeps_the_reported_ones() -> None:
    old = _results(128, -0.5, reported={"batch_64_150_steps": {"command": "b64"}})
    assert byz.reported_runs(old, old["details"]["protocol"]) == {"batch_64_150_steps": {"command": "b64"}}
    assert byz.reported_runs(None, old["details"]["protocol"]) == {}


def test_complete_claims_take_a_claim_this_run_has_not_every_seed_of_from_the_run_it_replaced() -> None:
    full = {"id": "byzantine_3_of_7_accuracy_delta", "delta": -9.0, "seeds": [0, 1, 2], "unit": "points"}
    reported = {"batch_64_150_steps": {"claims_as_reported_rows": [full]}}
    partial = {"id": "byzantine_3_of_7_accuracy_delta", "delta": -4.0, "seeds": [0], "per_seed_delta": [-4.0]}
    done = {"id": "byzantine_1_of_7_accuracy_delta", "delta": -0.5, "seeds": [2, 0, 1]}
    unknown = {"id": "new_claim", "delta": float("nan"), "seeds": []}
    out = byz.complete_claims([done, partial, unknown], [0, 1, 2], reported)
    assert out[0] is done and out[2] is unknown  # complete (any seed order), or nothing to fall back on
    assert out[1]["delta"] == -9.0 and out[1]["unit"] == "points" and out[1]["from_reported"] == "batch_64_150_steps"
    assert out[1]["incomplete_run"] == {"delta": -4.0, "per_seed_delta": [-4.0], "seeds": [0]}


def test_reported_key_names_the_batch_steps_and_seeds_of_an_attached_run() -> None:
    protocol = {"batch_per_worker": 128, "steps": [150]}
    assert byz.reported_key(protocol, [0]) == "batch_128_150_steps_seed_0"
    assert byz.reported_key(protocol, [0, 1]) == "batch_128_150_steps_seeds_0_1"
