"""The benchmarks' shared harness (``benchmarks/_harness.py``), their one atomic writer (``_results.write_json``),
and the ALPF / signSGD benchmarks driving the library's components (PartialFeedback, SignSGDStrategy)."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import _harness  # noqa: E402
import _results  # noqa: E402


def test_write_json_replaces_the_file_atomically_and_keeps_the_old_one_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "results" / "x.json"
    assert _results.write_json(target, {"a": torch.tensor(1.5)}) == target
    assert json.loads(target.read_text()) == {"a": 1.5}
    with pytest.raises(TypeError):
        _results.write_json(target, {"a": object()})  # not serializable: fails before the rename
    assert json.loads(target.read_text()) == {"a": 1.5}
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.json"]  # no temporary file left behind


def test_write_json_puts_number_lists_on_one_line_and_keeps_every_value(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    payload = {
        "what": "a string that looks like a list: [1,\n 2]",
        "curve": [1, -2.5e-07, 3.0, 1e300],
        "nested": [[1, 2], [3]],
        "mixed": ["x", 1],
        "empty": [],
        "odd": [float("inf"), float("-inf")],
    }
    _results.write_json(target, payload, inline_number_lists=True)
    text = target.read_text()
    assert '"curve": [1, -2.5e-07, 3.0, 1e+300],' in text
    assert "[1, 2]" in text and '"x",\n' in text  # a list with a string keeps one item per line
    assert json.loads(text) == payload  # values and strings unchanged
    _results.write_json(target, payload)
    assert '"curve": [\n' in target.read_text()  # off by default


def test_write_results_records_threads_and_load_average(tmp_path: Path) -> None:
    path = _results.write_results("demo", [], {"k": 1}, command="python x.py", results_dir=tmp_path)
    payload = json.loads(path.read_text())
    assert payload["command"] == "python x.py" and payload["details"] == {"k": 1}
    assert payload["machine"]["threads"] == torch.get_num_threads()
    assert len(payload["machine"]["load_average"]) == 3
    assert _results.read_results("demo", tmp_path)["name"] == "demo"
    with pytest.raises(FileNotFoundError, match=r"missing\.json"):
        _results.read_results("missing", tmp_path)


def test_fixed_steps_draws_seeded_batches_and_reads_a_callable_seed_when_iterated() -> None:
    seed = {"value": 3}
    sampler = _harness.FixedSteps(10, steps=4, batch_size=16, seed=lambda: seed["value"])
    first = list(sampler)
    assert len(first) == 4 and all(len(batch) == 10 for batch in first)  # batch capped at n, with replacement
    g = torch.Generator().manual_seed(3)
    assert first[0] == torch.randint(0, 10, (10,), generator=g).tolist()  # the hand loop's draw
    seed["value"] = 4
    assert list(sampler) != first
    with pytest.raises(ValueError, match="positive"):
        _harness.FixedSteps(0, 1, 1, 0)


def test_supervised_trains_through_the_harness_trainer_and_accuracy_counts_exactly() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 2)
    y = (x[:, 0] > 0).long()
    data = torch.utils.data.TensorDataset(x, y)
    module = _harness.Supervised(torch.nn.Linear(2, 2), lambda params: torch.optim.SGD(params, lr=0.5))
    _harness.trainer(max_steps=40, accelerator="cpu").fit(module, _harness.step_loader(data, 40, 32, seed=0))
    assert _harness.accuracy(module.net, x, y) >= 0.9
    assert module.net.training  # predict restores the mode
    logits, labels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), torch.tensor([0, 1, 1])
    assert _harness.accuracy(torch.nn.Identity(), logits, labels) == 2 / 3  # a count, not a float32 mean


@pytest.fixture(scope="module")
def alpf():
    import alpf as module

    return module


@pytest.mark.slow  # two Lightning fits (about 5 s on 2 idle cores)
def test_alpf_campaign_runs_the_partial_feedback_callback_inside_fit(alpf, monkeypatch: pytest.MonkeyPatch) -> None:
    from trinity_lightning.active.partial_feedback import ClassHierarchy, PartialFeedback, binary_search_costs

    used: list[PartialFeedback] = []

    class Spy(PartialFeedback):
        def on_fit_start(self, trainer, pl_module) -> None:
            used.append(self)
            super().on_fit_start(trainer, pl_module)

    monkeypatch.setattr(alpf, "PartialFeedback", Spy)
    torch.manual_seed(0)
    y = torch.arange(120) % 4
    x = torch.nn.functional.one_hot(y, 4).float().repeat(1, 2) + 0.1 * torch.randn(120, 8)
    hierarchy = ClassHierarchy.from_nested({"ab": ["a", "b"], "cd": ["c", "d"]})
    naive = int(binary_search_costs(hierarchy.question_masks())[y].sum())
    res = alpf.campaign("alpf_erc", x, y, x, y, hierarchy, naive, 0, 0.1, 0.2, True, steps=5, diagnose=True)
    assert len(used) == 2  # the 10%-rounds fit, then the run on to full annotation: two fits, two callbacks
    budgets = [row["budget"] for row in res["curve"]]
    assert budgets[:2] == pytest.approx([0.1, 0.2], abs=0.01)  # one row per round, the round's share of the cost
    assert all(b2 > b1 for b1, b2 in itertools.pairwise(budgets))  # the repeated first epoch of fit 2 is not a row
    assert res["questions_to_full"] is not None and res["questions_to_full"] <= naive
    assert all(0.0 <= row["accuracy"] <= 1.0 for row in res["curve"])
    assert len(res["model_already_right_on_newly_labelled"]) == len(res["curve"]) - 1  # rounds after the warm-up
    assert sum(res["fully_labelled_per_class"]) == 120  # everything labelled at the end


def test_signsgd_shards_are_disjoint_and_one_generator_draws_order_and_flips() -> None:
    import signsgd_accuracy as bench

    x, y = torch.randn(10, 3, 4, 4), torch.arange(10)
    shards = []
    for rank in range(3):
        dm = bench.ShardedCifar(x, y, batch_size=2, seed=1)
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=3)  # type: ignore[assignment]
        loader = dm.train_dataloader()
        shards.append(sorted(int(v) for _, labels in loader for v in labels))
        g = torch.Generator().manual_seed(100 + rank)
        order = torch.randperm(len(torch.arange(rank, 10, 3)), generator=g)
        flips = torch.rand(2, generator=g) < 0.5
        dm.generator.manual_seed(100 + rank)
        assert list(iter(loader.sampler)) == order.tolist()
        batch = x[:2]
        assert torch.equal(dm.flip(batch), torch.where(flips[:, None, None, None], batch.flip(3), batch))
    assert [len(s) for s in shards] == [4, 2, 2]  # 4, 3, 3 examples in batches of 2, the incomplete one dropped
    assert not set(shards[0]) & set(shards[1]) and not set(shards[1]) & set(shards[2])
