"""Relabels through files: the query marks a relabel and who answered already; a worker's new answer replaces only
their own earlier one in ``<labels_path>.annotations.json``; the web store asks someone else."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import pytest

from tests.active.test_relabel import Net, _crowd_task
from trinity_lightning.active import ActiveLearningDataModule
from trinity_lightning.active.relabel import ActiveRelabelling
from trinity_lightning.rounds.oracle import FileOracle, Query, append_answer, read_query_file
from trinity_lightning.rounds.web.store import CrowdFileOracle, LabelStore, RejectedAnswerError


def _campaign(tmp_path, annotations, oracle):
    data, _ = _crowd_task()
    dm = ActiveLearningDataModule(
        data, val=data, num_classes=2, batch_size=16, initial_labelled=0, labels_path=str(tmp_path / "labels.json")
    )
    dm.setup("fit")
    dm.label(sorted(annotations), [annotations[i][0][1] for i in sorted(annotations)])
    campaign = ActiveRelabelling(query_size=3, budget=20, annotations=annotations, oracle=oracle)
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False, default_root_dir=tmp_path)
    return campaign, dm, trainer


def test_relabel_queries_are_marked_and_a_workers_new_answer_replaces_only_their_own(tmp_path):
    oracle = FileOracle(str(tmp_path / "rounds"), wait=False, choices=["neg", "pos"])
    annotations = {0: [("ann", 1)], 1: [("bob", 0), ("anonymous-1", 1)], 2: [("anonymous-1", 0)]}
    campaign, dm, trainer = _campaign(tmp_path, annotations, oracle)
    campaign._ask(trainer, dm, 1, [0, 5, 1, 2])
    lines = [json.loads(t) for t in oracle.queries_path(1).read_text().splitlines()]
    assert [(q["index"], q.get("relabel"), q.get("answered_by")) for q in lines] == [
        (0, True, ["ann"]),
        (5, None, None),  # a new item: no relabel keys at all (files of earlier versions look the same)
        (1, True, ["bob"]),  # answers without a worker are nobody to skip
        (2, True, []),
    ]
    assert all(q["example"] is not None and q["choices"] == ["neg", "pos"] for q in lines)
    assert [q.relabel for q in read_query_file(oracle.queries_path(1))] == [True, None, True, True]
    # ann answers her item again (despite the mark), carl labels the new one, two answers come without a worker
    for record in (
        {"index": 0, "label": "neg", "worker": "ann"},
        {"index": 5, "label": "pos", "worker": "carl"},
        {"index": 1, "label": "neg"},
        {"index": 2, "label": "pos"},
    ):
        append_answer(oracle.answers_path(1), record)
    assert campaign._collect(trainer, Net(), dm, 1)
    on_disk = json.loads(ActiveRelabelling.annotations_path(dm).read_text())
    assert on_disk["0"] == [["ann", 0]]  # ann's new answer replaced her own
    assert on_disk["5"] == [["carl", 1]]
    assert on_disk["1"] == [["bob", 0], ["anonymous-1", 1], ["anonymous-2", 0]]
    assert on_disk["2"] == [["anonymous-1", 0], ["anonymous-2", 1]]  # another anonymous answer, not a replacement
    assert campaign.labels_spent == 4 and campaign.relabels == 3


def test_query_relabel_fields_are_checked(tmp_path):
    assert Query(3, relabel=True, answered_by=["ann"]).to_json(2) == {
        "round": 2, "index": 3, "kind": "class", "example": None, "choices": None,
        "relabel": True, "answered_by": ["ann"],
    }  # fmt: skip
    path = tmp_path / "round_0001.queries.jsonl"
    path.write_text('{"index": 1}\n{"index": 2, "relabel": "yes"}\n')
    with pytest.raises(ValueError, match=r"round_0001.queries.jsonl:2: .*\"relabel\" must be true or false"):
        read_query_file(path)
    path.write_text('{"index": 2, "relabel": true, "answered_by": "ann"}\n')
    with pytest.raises(ValueError, match=r":1: .*\"answered_by\" must be a list of worker names"):
        read_query_file(path)


def test_the_web_store_asks_someone_else_for_a_relabel_and_passes_on_who_answered(tmp_path):
    oracle = CrowdFileOracle(str(tmp_path), answers_per_item=1, wait=False, choices=["cat", "dog"])
    oracle.query(1, [Query(4, relabel=True, answered_by=["ann"]), 6])
    store = LabelStore(tmp_path, answers_per_item=1)
    with pytest.raises(RejectedAnswerError, match="index 4 is a relabel: 'ann' labelled it in an earlier round") as err:
        store.answer(1, 4, "dog", "ann")
    assert err.value.status == 409
    assert store.answer(1, 6, "cat", "ann")["worker"] == "ann"  # a new item: anyone
    store.answer(1, 4, "cat", "bo")
    answers = oracle.collect(1)
    assert answers is not None and answers.labels == [0, 0] and answers.workers == ["bo", "ann"]


def test_several_answers_per_item_are_kept_person_by_person(tmp_path):
    oracle = CrowdFileOracle(
        str(tmp_path / "rounds"), answers_per_item=2, aggregator="dawid_skene", wait=False, choices=["neg", "pos"]
    )
    annotations = {0: [("ann", 1)]}
    campaign, dm, trainer = _campaign(tmp_path, annotations, oracle)
    campaign._ask(trainer, dm, 1, [0, 5])
    for record in (
        {"index": 0, "label": "neg", "worker": "bo"},
        {"index": 0, "label": "pos"},  # no worker: kept beside the others under a fresh anonymous name
        {"index": 5, "label": "pos", "worker": "carl"},
        {"index": 5, "label": "pos", "worker": "dee"},
    ):
        append_answer(oracle.answers_path(1), record)
    answers = oracle.collect(1)
    assert answers is not None and answers.annotations == [[("bo", 0), (None, 1)], [("carl", 1), ("dee", 1)]]
    assert campaign._collect(trainer, Net(), dm, 1)
    on_disk = json.loads(ActiveRelabelling.annotations_path(dm).read_text())
    # the first answer without a worker to item 0: the same id the store and CrowdFileOracle give it
    assert on_disk["0"] == [["ann", 1], ["bo", 0], ["anonymous-1", 1]]
    assert oracle.annotations(1)[oracle.annotations(1)["task"] == 0]["worker"].tolist() == ["bo", "anonymous-1"]
    assert on_disk["5"] == [["carl", 1], ["dee", 1]]  # both people, not one anonymous aggregate
    assert campaign.labels_spent == 4 and campaign.relabels == 2  # every person's label counts against the budget
