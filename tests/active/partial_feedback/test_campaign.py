"""PartialFeedbackDataModule + PartialFeedback callback: rounds, budgets, persistence, checkpoint resume, recipe."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from trinity_lightning.active.partial_feedback import (
    ClassHierarchy,
    PartialFeedback,
    PartialFeedbackDataModule,
    PartialLabelClassifier,
    binary_search_costs,
)
from trinity_lightning.data import ArrayDataset

ROOT = Path(__file__).resolve().parents[3]
HIERARCHY = ClassHierarchy.from_nested({"animal": {"pet": ["cat", "dog"], "bird": None}, "vehicle": ["car", "truck"]})


def pool(n: int = 150, seed: int = 0) -> ArrayDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 5
    return ArrayDataset(3 * torch.eye(5)[y] + torch.randn(n, 5, generator=g), y)


def datamodule(tmp_path: Path, **kwargs) -> PartialFeedbackDataModule:
    return PartialFeedbackDataModule(
        pool(),
        HIERARCHY,
        val=pool(40, seed=1),
        batch_size=16,
        partial_path=str(tmp_path / "partial.npz"),
        labels_path=str(tmp_path / "labels.json"),
        **kwargs,
    )


def model() -> PartialLabelClassifier:
    torch.manual_seed(0)
    return PartialLabelClassifier(
        model=nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 5)), num_classes=5, lr=0.05
    )


def trainer(tmp_path: Path, epochs: int, callbacks: list) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        reload_dataloaders_every_n_epochs=1,
        callbacks=callbacks,
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        accelerator="cpu",
        deterministic=True,
    )


def test_datamodule_answers_persist_and_fill_the_labelled_set(tmp_path):
    dm = datamodule(tmp_path, initial_labelled=3)
    dm.setup("fit")
    assert dm.hierarchy.is_binary() and dm.n_labelled == 3
    assert bool(dm.partial.fully_labelled[dm.labelled_indices].all())  # seed labels collapse candidate sets
    animal = dm.question_names.index("animal")
    open_ = dm.pool_indices[:2]
    dm.answer(open_, [animal, animal], [True, False])
    assert dm.partial.num_candidates[open_].tolist() == [3, 2]
    x, cands = next(iter(dm.train_dataloader()))
    assert cands.dtype == torch.bool and cands.shape[1] == 5 and x.shape[1] == 5
    assert len(dm.train_dataloader().dataset) == 5  # 3 exact + 2 partial
    car = dm.question_names.index("car")
    dm.answer([open_[1]], [car], [True])
    assert dm.n_labelled == 4 and open_[1] in dm.labelled_indices and dm.annotations[open_[1]] == 3
    # a fresh DataModule (after a crash) restores everything from the two files
    again = datamodule(tmp_path, initial_labelled=3)
    again.setup("fit")
    assert again.partial.candidates.equal(dm.partial.candidates)
    assert again.labelled_indices == dm.labelled_indices and again.partial.num_questions == 3
    with pytest.raises(ValueError, match="questions"):
        dm.answer([0], [99], [True])
    with pytest.raises(ValueError, match="hierarchy"):
        PartialFeedbackDataModule(pool())


def test_campaign_spends_the_budget_and_learns(tmp_path):
    dm = datamodule(tmp_path)
    naive = int(binary_search_costs(dm.hierarchy.question_masks())[pool().labels].sum())
    callback = PartialFeedback("alpf_erc", round_budget=0.2, total_budget=0.8, curve_path=str(tmp_path / "c.csv"))
    trainer(tmp_path, 5, [callback]).fit(model(), datamodule=dm)
    assert callback.naive_cost == naive
    # rounds at fit start and after epochs 1-4 (none after the last epoch: nothing would train on it)
    questions = [row["questions"] for row in callback.curve]
    assert questions[:3] == [round(0.2 * naive * k) for k in (1, 2, 3)]
    # the last round spends the rest of the budget, or stops early once every example is fully labelled
    assert questions[3] == round(0.8 * naive) or bool(dm.partial.fully_labelled.all())
    assert dm.partial.num_questions == callback.spent == questions[3]
    assert int(dm.partial.fully_labelled.sum()) == dm.n_labelled > 0
    assert callback.curve[-1]["val_acc"] > 0.8  # separable blobs: partial labels are enough
    lines = (tmp_path / "c.csv").read_text().splitlines()
    assert lines[0].startswith("round,questions,budget_fraction") and len(lines) == 5
    # every recorded answer agrees with the gold label (the simulated oracle and the state are consistent)
    labels = dm.partial.labels()
    done = labels >= 0
    assert labels[done].equal(pool().labels[done])


def test_checkpoint_resume_restores_candidates_and_budget(tmp_path):
    dm = datamodule(tmp_path)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    first = PartialFeedback("aq_erc", round_budget=0.1, total_budget=0.5)
    trainer(tmp_path, 2, [first, ckpt]).fit(model(), datamodule=dm)
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert saved["callbacks"][first.state_key]["spent"] == first.spent
    assert saved["PartialFeedbackDataModule"]["partial"]["candidates"].equal(dm.partial.candidates)
    # resume in a new process-like setting: fresh objects, same files, ckpt_path
    dm2 = datamodule(tmp_path)
    second = PartialFeedback("aq_erc", round_budget=0.1, total_budget=0.5)
    resumed = trainer(tmp_path, 4, [second, ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)])
    resumed.fit(model(), datamodule=dm2, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    questions = [row["questions"] for row in first.curve]
    assert [row["questions"] for row in second.curve[: len(first.curve)]] == questions
    assert second.round == first.round + 1 and second.spent == dm2.partial.num_questions  # after epoch 2 only
    assert second.spent == round(0.1 * second.naive_cost) * second.round


def test_bad_configuration(tmp_path):
    """The reload rule and the wrong-DataModule error are the same in ActiveLearning and PartialFeedback."""
    from trinity_lightning.active import ActiveLearning, ActiveLearningDataModule
    from trinity_lightning.rounds import WrongDataModuleError

    with pytest.raises(ValueError, match="reload_dataloaders_every_n_epochs: PartialFeedback"):
        pl.Trainer(max_epochs=1, reload_dataloaders_every_n_epochs=2, callbacks=[PartialFeedback()], logger=False).fit(
            model(), datamodule=datamodule(tmp_path)
        )
    unset = pl.Trainer(max_epochs=1, callbacks=[PartialFeedback()], logger=False, enable_progress_bar=False)
    unset.fit(model(), datamodule=datamodule(tmp_path))  # unset: the callback sets it (as ActiveLearning does)
    assert unset.reload_dataloaders_every_n_epochs == 1
    plain = ActiveLearningDataModule(pool(), num_classes=5, initial_labelled=5)
    other = pl.LightningDataModule.from_datasets(pool())
    for callback, dm in ((PartialFeedback(), plain), (ActiveLearning(), other)):
        with pytest.raises(WrongDataModuleError, match=f"datamodule: {type(callback).__name__} needs"):
            pl.Trainer(max_epochs=1, callbacks=[callback], logger=False).fit(model(), datamodule=dm)
    assert issubclass(WrongDataModuleError, TypeError) and issubclass(WrongDataModuleError, ValueError)
    with pytest.raises(ValueError, match="round_budget"):
        PartialFeedback(round_budget=-1)
    with pytest.raises(ValueError, match="strategy"):
        PartialFeedback("nope")


def test_recipe_smoke(tmp_path, monkeypatch):
    from trinity_lightning.cli import run_lightning

    recipe = yaml.safe_load((ROOT / "recipes" / "alpf.yaml").read_text())
    recipe["trainer"].update(
        max_epochs=2,
        default_root_dir=str(tmp_path / "run"),
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_train_batches=4,
        limit_val_batches=2,
    )
    recipe["trainer"]["callbacks"][0]["init_args"]["curve_path"] = str(tmp_path / "curve.csv")
    recipe["data"]["init_args"].update(partial_path=str(tmp_path / "p.npz"), labels_path=str(tmp_path / "l.json"))
    config = tmp_path / "alpf.yaml"
    config.write_text(yaml.safe_dump(recipe))
    monkeypatch.chdir(tmp_path)
    cli = run_lightning(["fit", "--config", str(config), "--summary", "false"])
    assert (tmp_path / "curve.csv").read_text().count("\n") == 3  # header + 2 rounds (fit start + epoch 1)
    assert cli.datamodule.partial.num_questions > 0 and (tmp_path / "p.npz").is_file()


def test_human_campaign_through_trinity_label_files(tmp_path):
    """Questions go out as the round engine's query files; answers come back as `trinity label` writes
    them; a stopped campaign resumes without losing or repeating a question; pending is a state, not an error."""
    folder = tmp_path / "ask"
    gold = pool().labels

    def run() -> tuple[PartialFeedbackDataModule, PartialFeedback]:
        dm = datamodule(tmp_path)
        callback = PartialFeedback("alpf_erc", round_budget=20, total_budget=60, questions_file=str(folder))
        trainer(tmp_path, 3, [callback]).fit(model(), datamodule=dm)
        return dm, callback

    def answer(round_: int) -> None:
        queries = [yaml.safe_load(line) for line in (folder / f"round_{round_:04d}.queries.jsonl").open()]
        assert all(q["choices"] == ["no", "yes"] and q["question"].startswith("Is this a") for q in queries)
        masks = HIERARCHY.binarized().question_masks()
        with (folder / f"round_{round_:04d}.answers.jsonl").open("a") as handle:
            for q in queries:
                yes = bool(masks[q["question_id"], gold[q["index"]]])
                handle.write(f'{{"index": {q["index"]}, "label": "{"yes" if yes else "no"}"}}\n')

    dm, callback = run()  # nothing answered yet: the run stops cleanly before training, waiting
    assert callback.waiting and callback.phase == "waiting" and dm.partial.num_questions == 0
    queries = [yaml.safe_load(line) for line in (folder / "round_0001.queries.jsonl").open()]
    assert {q["kind"] for q in queries} == {"yesno"} and len(queries) == 20
    answer(1)
    dm, callback = run()  # applies the 20 answers, trains an epoch, asks the next batch and stops
    assert dm.partial.num_questions == callback.spent == 20
    assert (folder / "round_0002.queries.jsonl").is_file()
    answer(2)
    dm, callback = run()
    assert dm.partial.num_questions == 40
    labels = dm.partial.labels()
    assert labels[labels >= 0].equal(gold[labels >= 0])  # every answer went to the right example
    ex, _, _ = dm.partial.history()
    assert ex.numel() == 40


def test_yes_no_queries_carry_the_hierarchy_path_and_the_classes_left(tmp_path):
    """What the labelling page shows beside the question (issue 15): the asked node's path and the candidates."""
    dm = datamodule(tmp_path)
    dm.setup("fit")
    question = dm.question_names.index("cat")
    query = PartialFeedback._question(dm, 3, question)
    assert query.kind == "yesno" and query.question_id == question and "cat" in (query.question or "")
    assert query.example["path"] == ["animal", "pet", "cat"]
    assert sorted(query.example["candidates"]) == sorted(HIERARCHY.classes)  # nothing asked yet
    assert len(query.example["features"]) == 5  # the example itself is still shown
