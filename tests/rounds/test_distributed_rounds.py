"""The three round callbacks under DDP (2 CPU processes, gloo): each rank scores its shard of the pool, one
query file is written (by rank 0, after a barrier), the replicas stay identical, and a stopped campaign
resumes on every rank from the same files."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import nn

from trinity_lightning.active import ActiveLearning, ActiveLearningDataModule, FileOracle
from trinity_lightning.models import Classifier

from ..active._helpers import blobs

pytestmark = [pytest.mark.slow, pytest.mark.distributed]


class ShardedPool(ActiveLearningDataModule):
    """Records which pool items each rank scored."""

    def __init__(self, root: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root = root

    def pool_dataloader(self, indices=None):
        rank = self.trainer.global_rank if getattr(self, "trainer", None) is not None else 0
        with (Path(self.root) / f"pool_rank{rank}.jsonl").open("a") as handle:
            handle.write(json.dumps(sorted(int(i) for i in indices)) + "\n")
        return super().pool_dataloader(indices)


class Report(Callback):
    def __init__(self, root: str, tag: str, callback_name: str) -> None:
        self.root, self.tag, self.callback_name = root, tag, callback_name

    def on_fit_end(self, trainer, pl_module):
        callback = next(c for c in trainer.callbacks if type(c).__name__ == self.callback_name)
        dm = trainer.datamodule
        weights = torch.cat([p.detach().reshape(-1) for p in pl_module.parameters()])
        record = {
            "phase": getattr(callback, "phase", None),
            "round": callback.round,
            "labelled": dm.labelled_indices if hasattr(dm, "labelled_indices") else None,
            "weights": weights.tolist(),
            "history": getattr(callback, "history", None),
            "questions": int(dm.partial.num_questions) if getattr(dm, "partial", None) is not None else None,
        }
        (Path(self.root) / f"{self.tag}_rank{trainer.global_rank}.json").write_text(json.dumps(record))


def _trainer(root: Path, callbacks: list, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        callbacks=callbacks,
        **kwargs,
    )


def _model() -> Classifier:
    torch.manual_seed(0)
    return Classifier(
        model=nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3)), num_classes=3
    )


def _reports(root: Path, tag: str) -> list[dict]:
    return [json.loads((root / f"{tag}_rank{r}.json").read_text()) for r in (0, 1)]


def test_active_learning_two_ranks_one_query_file_and_resume(tmp_path):
    def run(tag: str, ckpt_path=None) -> None:
        dm = ShardedPool(
            str(tmp_path),
            dataset=blobs(120),
            val=blobs(30, 1),
            num_classes=3,
            initial_labelled=10,
            batch_size=8,
            labels_path=str(tmp_path / "labels.json"),
        )
        oracle = FileOracle(str(tmp_path / "q"), wait=False, choices=["a", "b", "c"])
        al = ActiveLearning("bald", query_size=6, budget=22, strategy_kwargs={"n_samples": 3}, oracle=oracle)
        ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
        _trainer(tmp_path, [al, ckpt, Report(str(tmp_path), tag, "ActiveLearning")], max_epochs=-1).fit(
            _model(), datamodule=dm, ckpt_path=ckpt_path
        )

    run("first")
    first = _reports(tmp_path, "first")
    assert [r["phase"] for r in first] == ["waiting", "waiting"] and first[0]["weights"] == first[1]["weights"]
    shards = [json.loads((tmp_path / f"pool_rank{r}.jsonl").read_text().splitlines()[0]) for r in (0, 1)]
    assert not set(shards[0]) & set(shards[1]) and len(shards[0]) + len(shards[1]) == 110  # each rank its half
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == ["round_0001.queries.jsonl"]  # one file, no temp
    queries = [json.loads(x) for x in (tmp_path / "q" / "round_0001.queries.jsonl").read_text().splitlines()]
    gold = blobs(120).labels
    (tmp_path / "q" / "round_0001.answers.jsonl").write_text(
        "".join(json.dumps({"index": q["index"], "label": int(gold[q["index"]])}) + "\n" for q in queries)
    )
    run("second", ckpt_path="last")
    second = _reports(tmp_path, "second")
    assert second[0]["labelled"] == second[1]["labelled"] and len(second[0]["labelled"]) == 16
    assert second[0]["weights"] == second[1]["weights"] and second[0]["round"] == 1
    assert (tmp_path / "q" / "round_0002.queries.jsonl").is_file()  # the next round was asked, once


def test_partial_feedback_two_ranks(tmp_path):
    from trinity_lightning.active.partial_feedback import (
        ClassHierarchy,
        PartialFeedback,
        PartialFeedbackDataModule,
        PartialLabelClassifier,
    )
    from trinity_lightning.data import ArrayDataset

    g = torch.Generator().manual_seed(0)
    y = torch.arange(90) % 3
    pool = ArrayDataset(3 * torch.eye(4)[y] + torch.randn(90, 4, generator=g), y)
    hierarchy = ClassHierarchy.from_nested({"ab": ["a", "b"], "c": None})
    masks = hierarchy.binarized().question_masks()

    def run(tag: str) -> list[dict]:
        dm = PartialFeedbackDataModule(pool, hierarchy, val=pool, batch_size=8, partial_path=str(tmp_path / "p.npz"))
        callback = PartialFeedback("alpf_erc", round_budget=20, total_budget=40, questions_file=str(tmp_path / "q"))
        torch.manual_seed(0)
        model = PartialLabelClassifier(model=nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), num_classes=3)
        _trainer(tmp_path, [callback, Report(str(tmp_path), tag, "PartialFeedback")], max_epochs=3).fit(
            model, datamodule=dm
        )
        return _reports(tmp_path, tag)

    first = run("pf")
    assert [r["phase"] for r in first] == ["waiting", "waiting"]
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == ["round_0001.queries.jsonl"]
    queries = [json.loads(x) for x in (tmp_path / "q" / "round_0001.queries.jsonl").read_text().splitlines()]
    answers = "".join(
        json.dumps({"index": q["index"], "label": "yes" if masks[q["question_id"], y[q["index"]]] else "no"}) + "\n"
        for q in queries
    )
    (tmp_path / "q" / "round_0001.answers.jsonl").write_text(answers)
    second = run("pf2")  # every rank applies the same answers, trains, and asks the next batch once
    assert [r["questions"] for r in second] == [20, 20] and second[0]["weights"] == second[1]["weights"]
    assert (tmp_path / "q" / "round_0002.queries.jsonl").is_file()


def test_crowd_em_two_ranks_identical(tmp_path):
    from trinity_lightning.crowd import CrowdEM
    from trinity_lightning.crowd.datamodule import CrowdDataModule

    g = torch.Generator().manual_seed(0)
    truth = torch.arange(60) % 3
    x = 3 * torch.eye(4)[truth] + torch.randn(60, 4, generator=g)
    frame = {"task": [], "worker": [], "label": []}
    for item in range(60):
        for worker in range(3):
            right = torch.rand(1, generator=g).item() < 0.7
            frame["task"].append(item)
            frame["worker"].append(f"w{worker}")
            frame["label"].append(int(truth[item]) if right else int((truth[item] + 1) % 3))
    dm = CrowdDataModule(x, frame, num_classes=3, batch_size=8)
    callback = CrowdEM(epochs_per_round=1, guard=False)
    _trainer(tmp_path, [callback, Report(str(tmp_path), "crowd", "CrowdEM")], max_epochs=2).fit(_model(), datamodule=dm)
    reports = _reports(tmp_path, "crowd")
    assert reports[0]["history"] == reports[1]["history"] and len(reports[0]["history"]) == 2
    assert reports[0]["weights"] == reports[1]["weights"]
