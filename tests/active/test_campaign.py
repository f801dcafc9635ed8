import csv
import itertools
import json

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import nn

from trinity_lightning.active import ActiveLearning, FileOracle
from trinity_lightning.models import Classifier

from ._helpers import datamodule, mlp


def _trainer(tmp_path, *callbacks, **kwargs):
    return pl.Trainer(
        max_epochs=-1,
        callbacks=list(callbacks),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **kwargs,
    )


def test_campaign_reaches_budget_and_writes_curve(tmp_path):
    dm = datamodule()
    al = ActiveLearning(
        "bald",
        query_size=10,
        budget=52,
        epochs_per_round=2,
        strategy_kwargs={"n_samples": 4},
        curve_path=str(tmp_path / "curve.csv"),
    )
    trainer = _trainer(tmp_path, al)
    trainer.fit(mlp(), datamodule=dm)
    assert dm.n_labelled == 52 and al.finished and al.round == 4
    rows = list(csv.DictReader((tmp_path / "curve.csv").open()))
    assert [int(r["labelled"]) for r in rows] == [12, 22, 32, 42, 52]
    assert [int(r["round"]) for r in rows] == [0, 1, 2, 3, 4]
    assert float(rows[-1]["val_acc"]) > 0.85 and float(rows[-1]["val_acc"]) >= float(rows[0]["val_acc"])
    assert trainer.current_epoch == 10  # 5 rounds x 2 epochs
    assert sorted((dm.labelled_round == r).sum() for r in range(5)) == [10, 10, 10, 10, 12]


def test_token_budget(tmp_path):
    dm = datamodule(cost_fn=lambda item: int(item[1]) + 1)  # class c costs c + 1 "tokens"
    al = ActiveLearning("entropy", query_size=12, budget=60, unit="tokens", curve_path=str(tmp_path / "c.csv"))
    _trainer(tmp_path, al).fit(mlp(), datamodule=dm)
    costs = [int(r["labelled_tokens"]) for r in csv.DictReader((tmp_path / "c.csv").open())]
    steps = [b - a for a, b in itertools.pairwise(costs)]
    assert all(12 <= s < 12 + 3 for s in steps[:-1]) and 0 < steps[-1] < 12 + 3  # overshoot < one example
    assert 60 <= costs[-1] < 60 + 3


class _Crash(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated crash")


def _deterministic_model():
    torch.manual_seed(0)
    return Classifier(model=nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3)), num_classes=3, lr=0.05)


def test_kill_and_resume_same_labels_and_next_query(tmp_path):
    def run(root, crash_epoch=None, ckpt_path=None):
        dm = datamodule(root, initial_labelled=12)
        al = ActiveLearning("entropy", query_size=10, budget=52, epochs_per_round=2, curve_path=str(root / "c.csv"))
        ckpt = ModelCheckpoint(dirpath=root / "ckpt", save_last=True)
        cbs = [al, ckpt] + ([_Crash(crash_epoch)] if crash_epoch is not None else [])
        _trainer(root, *cbs).fit(_deterministic_model(), datamodule=dm, ckpt_path=ckpt_path)
        return dm, al

    ref_dm, ref_al = run(tmp_path / "ref")
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tmp_path / "run", crash_epoch=5)  # round 2 done at epoch 5's start; crash mid-round
    saved = json.loads((tmp_path / "run" / "labels.json").read_text())
    assert len(saved["labelled"]) == 32  # nothing labelled was lost
    ckpt = torch.load(tmp_path / "run" / "ckpt" / "last.ckpt", weights_only=False)
    assert ckpt["ActiveLearningDataModule"]["round"] == 2
    assert ckpt["ActiveLearningDataModule"]["labelled_round"] == [
        r if r <= 2 else -1 for r in ref_dm.labelled_round.tolist()
    ]  # same labelled set as the reference
    dm, al = run(tmp_path / "run", ckpt_path="last")
    next_query = sorted(i for i, r in enumerate(dm.labelled_round.tolist()) if r == 3)
    assert len(next_query) == 10
    assert next_query == sorted(i for i, r in enumerate(ref_dm.labelled_round.tolist()) if r == 3)  # same next query
    assert dm.labelled_round.tolist() == ref_dm.labelled_round.tolist()  # and the same ones after it
    assert al.last_query == ref_al.last_query
    assert [r["labelled"] for r in al.curve] == [r["labelled"] for r in ref_al.curve]
    assert [round(r["val_acc"], 5) for r in al.curve] == [round(r["val_acc"], 5) for r in ref_al.curve]


def test_reset_weights_restores_initial_model(tmp_path):
    seen = {}

    class Probe(Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if al.round == 1 and "w" not in seen:
                seen["w"] = {k: v.clone() for k, v in pl_module.state_dict().items()}
                seen["opt"] = len(trainer.optimizers[0].state)

    al = ActiveLearning("margin", query_size=10, budget=22, reset_weights=True)
    model = mlp()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    _trainer(tmp_path, al, Probe()).fit(model, datamodule=datamodule())
    assert all(torch.equal(seen["w"][k], initial[k]) for k in initial)
    assert seen["opt"] == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"strategy": "entropy", "query_size": 500}, "query_size"),
        ({"strategy": "bald"}, "dropout"),
    ],
)
def test_campaign_errors(tmp_path, kwargs, match):
    model = mlp() if kwargs["strategy"] != "bald" else _deterministic_model()
    with pytest.raises(ValueError, match=match):
        _trainer(tmp_path, ActiveLearning(**kwargs)).fit(model, datamodule=datamodule())
    with pytest.raises(ValueError, match="pool is empty"):
        _trainer(tmp_path, ActiveLearning()).fit(mlp(), datamodule=datamodule(initial_labelled=240))
    for bad, what in [
        ({"query_size": 0}, "query_size"),
        ({"unit": "words"}, "unit"),
        ({"pool_subset": 1.5}, "pool_subset"),
        ({"strategy": "nope"}, "strategy"),
    ]:
        with pytest.raises(ValueError, match=what):
            ActiveLearning(**bad)


def test_human_oracle_campaign_stops_and_resumes(tmp_path):
    def run(ckpt_path=None):
        dm = datamodule(tmp_path, initial_labelled=12)
        oracle = FileOracle(str(tmp_path / "queries"), wait=False, choices=["a", "b", "c"])
        al = ActiveLearning("least_confidence", query_size=4, budget=16, oracle=oracle)
        ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
        _trainer(tmp_path, al, ckpt).fit(mlp(), datamodule=dm, ckpt_path=ckpt_path)
        return dm, al, oracle

    dm, al, oracle = run()
    assert al.waiting and dm.n_labelled == 12
    queried = oracle.pending_indices(1)
    assert len(queried) == 4 and al.last_query == queried
    lines = [json.loads(x) for x in oracle.queries_path(1).read_text().splitlines()]
    assert lines[0]["choices"] == ["a", "b", "c"] and len(lines[0]["example"]["features"]) == 4
    with oracle.answers_path(1).open("w") as f:
        for i in queried[:3]:
            f.write(json.dumps({"index": i, "label": "c"}) + "\n")
        f.write("{broken\n")
        f.write(json.dumps({"index": queried[3], "label": 0}) + "\n")
    with pytest.warns(UserWarning, match=r"answers.jsonl:4"):
        dm, al, oracle = run(ckpt_path="last")
    assert al.finished and dm.n_labelled == 16
    assert dm.annotations == {queried[0]: 2, queried[1]: 2, queried[2]: 2, queried[3]: 0}
    assert json.loads((tmp_path / "labels.json").read_text())["labels"][str(queried[0])] == 2


def test_simulated_oracle_with_held_back_gold(tmp_path):
    from trinity_lightning.active import SimulatedOracle

    gold = [(i * 7) % 3 for i in range(240)]  # labels the dataset itself does not carry
    al = ActiveLearning("margin", query_size=10, budget=32, oracle=SimulatedOracle(gold))
    dm = datamodule()
    _trainer(tmp_path, al).fit(mlp(), datamodule=dm)
    assert len(dm.annotations) == 20 and all(v == gold[k] for k, v in dm.annotations.items())


def test_human_answers_by_name_survive_a_restart(tmp_path):
    """After a restart the oracle learns the label names again (from the DataModule or the query file)."""
    from trinity_lightning.active import ActiveLearningDataModule

    from ._helpers import blobs

    class Named(ActiveLearningDataModule):
        classes = ("a", "b", "c")

    def run(ckpt_path=None):
        dm = Named(
            blobs(240),
            val=blobs(60, seed=1),
            num_classes=3,
            initial_labelled=12,
            batch_size=16,
            labels_path=str(tmp_path / "labels.json"),
        )
        oracle = FileOracle(str(tmp_path / "queries"), wait=False)  # no choices: they come from dm.classes
        al = ActiveLearning("least_confidence", query_size=4, budget=16, oracle=oracle)
        ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
        _trainer(tmp_path, al, ckpt).fit(mlp(), datamodule=dm, ckpt_path=ckpt_path)
        return dm, al, oracle

    _, al, oracle = run()
    queried = oracle.pending_indices(1)
    assert al.waiting and json.loads(oracle.queries_path(1).read_text().splitlines()[0])["choices"] == ["a", "b", "c"]
    with oracle.answers_path(1).open("w") as f:  # what `trinity label` writes: names
        f.writelines(json.dumps({"index": i, "label": "c"}) + "\n" for i in queried)
    fresh = FileOracle(str(tmp_path / "queries"), wait=False)  # knows no names: reads them from the query file
    assert fresh.collect(1).labels == [2, 2, 2, 2]
    dm, al, _ = run(ckpt_path="last")
    assert al.finished and dm.annotations == dict.fromkeys(queried, 2)
    assert json.loads((tmp_path / "labels.json").read_text())["labels"] == {str(i): 2 for i in sorted(queried)}


def test_resume_with_answers_still_missing_stops_cleanly(tmp_path):
    """Pending is a state, never an exception: resuming before the person finished stops again, and says so."""

    def run(ckpt_path=None):
        dm = datamodule(tmp_path, initial_labelled=12)
        oracle = FileOracle(str(tmp_path / "queries"), wait=False, choices=["a", "b", "c"])
        al = ActiveLearning("least_confidence", query_size=4, budget=16, oracle=oracle)
        ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
        trainer = _trainer(tmp_path, al, ckpt)
        trainer.fit(mlp(), datamodule=dm, ckpt_path=ckpt_path)
        return trainer, dm, al, oracle

    _, _, al, oracle = run()
    first = oracle.pending_indices(1)
    oracle.answers_path(1).write_text(json.dumps({"index": first[0], "label": "a"}) + "\n")  # one of four
    trainer, dm, al, _ = run(ckpt_path="last")
    assert al.phase == "waiting" and dm.n_labelled == 12 and trainer.global_step == 1  # no training happened
    assert oracle.pending_indices(1) == first  # the same batch, not a new one


def test_a_campaign_starts_from_nothing_labelled(tmp_path):
    """New text labelled from zero (issue 14 item 17): the first round is asked before any training."""
    dm = datamodule(initial_labelled=0)
    al = ActiveLearning("entropy", query_size=10, budget=30, curve_path=str(tmp_path / "curve.csv"))
    _trainer(tmp_path, al).fit(mlp(), datamodule=dm)
    assert al.finished and dm.n_labelled == 30 and al.round == 3
    rows = list(csv.DictReader((tmp_path / "curve.csv").open()))
    assert [int(r["labelled"]) for r in rows] == [10, 20, 30]


def test_a_person_labels_the_first_round_from_nothing_then_reruns_the_command(tmp_path):
    def run():
        dm = datamodule(tmp_path, initial_labelled=0)
        al = ActiveLearning("entropy", query_size=6, budget=12, oracle=FileOracle(str(tmp_path / "rounds"), wait=False))
        pl.seed_everything(0, verbose=False)
        _trainer(tmp_path, al).fit(mlp(), datamodule=dm)
        return dm, al

    dm, al = run()
    assert al.waiting and dm.n_labelled == 0  # nothing to train on: the fit ends at once, the round is on file
    queries = [json.loads(line) for line in (tmp_path / "rounds" / "round_0001.queries.jsonl").open()]
    assert len(queries) == 6
    with (tmp_path / "rounds" / "round_0001.answers.jsonl").open("w") as answers:
        for q in queries:
            answers.write(json.dumps({"index": q["index"], "label": int(q["index"]) % 3}) + "\n")
    dm, al = run()  # the same command again: the same batch, its answers read, the campaign goes on
    assert dm.n_labelled >= 6 and al.round >= 1
    assert {q["index"] for q in queries} <= set(dm.labelled_indices)
