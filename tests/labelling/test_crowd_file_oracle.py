"""CrowdFileOracle with k > 1 answers per item: every answer keeps its worker (the file's ``worker`` field, or a
stable ``anonymous-j``), so the aggregators that model workers (Dawid-Skene, GLAD, MACE) fit the round's real
table, even from an answers file with the usual defects."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.labelling.conftest import write_queries
from trinity_lightning.crowd import MACE
from trinity_lightning.crowd.registry import get_aggregator
from trinity_lightning.rounds.web import CrowdFileOracle

CLASSES = ["cat", "dog"]


def _crowd(n: int = 24) -> tuple[np.ndarray, list[tuple[int, str, str]]]:
    """ann always right, bo always says cat, cy says cat 80% of the time: majority is wrong on most dogs."""
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, n)
    rows = []
    for i, z in enumerate(truth):
        rows += [(i, "ann", CLASSES[z]), (i, "bo", "cat"), (i, "cy", "cat" if rng.random() < 0.8 else "dog")]
    return truth, rows


def _defective_file(path, rows) -> dict[int, str]:
    """The rows as answer lines with the usual defects; returns {line number: expected problem}."""
    lines: list[str] = []
    problems = {}

    def bad(text: str, problem: str) -> None:
        lines.append(text)
        problems[len(lines)] = problem

    for n, (index, worker, label) in enumerate(rows):
        if n == 3:
            lines.append("")  # a blank line
            bad('{"index": 1, "label": "dog", "worker": "ann"', "Expecting ',' delimiter")  # cut short by a crash
        if n == 7:
            bad(json.dumps({"index": 2, "label": "cow", "worker": "ann"}), "unknown label 'cow'")
            bad(json.dumps({"index": 99, "label": "cat", "worker": "ann"}), "index 99 was not asked")
            bad(json.dumps({"index": 2, "label": "cat", "worker": 7}), '"worker" must be a string, got 7')
            bad(json.dumps({"index": 2, "label": "cat"}).replace('"label"', '"lable"'), "expected an object with")
        if worker == "ann" and index == 5:  # ann answers, then corrects herself: the last answer wins
            lines.append(json.dumps({"index": index, "label": "cat" if label == "dog" else "dog", "worker": "ann"}))
        if worker == "bo" and index % 3 == 0:
            worker = f"  {worker} "  # stray spaces around a name
        record = json.dumps({"index": index, "label": label, "worker": worker})
        lines.append(record + ("\r" if index == 4 else ""))  # a Windows line ending
    path.write_text("\n".join(lines) + '\n{"index": 0, "label": "dog", "wor', encoding="utf-8")  # a torn last line
    return problems


@pytest.mark.parametrize("name", ["dawid_skene", "glad", "mace"])
def test_workers_from_a_defective_file_feed_the_aggregators_that_model_them(tmp_path, name):
    truth, rows = _crowd()
    queries = write_queries(tmp_path, 1, [{"index": i, "kind": "class", "choices": CLASSES} for i in range(len(truth))])
    problems = _defective_file(tmp_path / "round_0001.answers.jsonl", rows)
    oracle = CrowdFileOracle(str(tmp_path), answers_per_item=3, aggregator=name, wait=False)
    answers = oracle.collect(1)
    assert answers is not None and answers.indices == list(range(len(truth)))
    assert answers.workers == [None] * len(truth)  # an aggregate of three people has no one name
    assert len(oracle.problems) == len(problems)
    for line, (number, problem) in zip(oracle.problems, problems.items(), strict=True):
        assert line.startswith(f"{tmp_path / 'round_0001.answers.jsonl'}:{number}: ") and problem in line, line
    clean = pd.DataFrame(rows, columns=["task", "worker", "label"])
    table = oracle.annotations(1)
    assert sorted(table.itertuples(index=False, name=None)) == sorted(rows)  # the defects left no trace
    model = oracle.aggregator_
    assert type(model).__name__ == type(get_aggregator(name)).__name__
    assert list(model.table_.worker_ids) == ["ann", "bo", "cy"]
    direct = get_aggregator(name).fit(clean, classes=CLASSES)
    assert answers.labels == direct.labels_.tolist()  # the same fit as on the clean table
    if name == "mace":  # a model of who spams finds ann: every label right, where majority gets most dogs wrong
        assert answers.labels == truth.tolist()
        majority = CrowdFileOracle(str(tmp_path), answers_per_item=3, wait=False).collect(1)
        assert majority is not None and np.mean(np.array(majority.labels) == truth) < 0.6
    assert queries.exists()


def test_answers_without_workers_get_stable_ids_and_count_towards_k(tmp_path):
    write_queries(tmp_path, 1, [{"index": i, "kind": "yesno", "question": "Is it a cat?"} for i in range(3)])
    path = tmp_path / "round_0001.answers.jsonl"
    lines = [{"index": i, "label": label} for i in range(3) for label in ("yes", "yes", "no")][:-1]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    oracle = CrowdFileOracle(str(tmp_path), answers_per_item=3, aggregator="dawid_skene", wait=False)
    assert oracle.collect(1) is None  # item 2 has two answers, not three: worker-less answers are not one person
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"index": 2, "label": "yes", "worker": ""}) + "\n")  # an empty name is no name
        handle.write(json.dumps({"index": 0, "label": "no"}) + "\n")  # a fourth answer: another person, kept
    answers = oracle.collect(1)
    assert answers is not None and answers.labels == [True, True, True] and answers.workers == [None] * 3
    table = oracle.annotations(1)
    assert table[table["task"] == 0]["worker"].tolist() == ["anonymous-1", "anonymous-2", "anonymous-3", "anonymous-4"]
    assert table.equals(oracle.annotations(1))  # the same ids on every read
    assert list(oracle.aggregator_.table_.worker_ids) == [f"anonymous-{j}" for j in (1, 2, 3, 4)]
    assert list(oracle.aggregator_.table_.classes) == ["no", "yes"]


def test_one_class_round_an_aggregator_object_and_bad_names(tmp_path):
    write_queries(tmp_path, 1, [{"index": i, "kind": "class", "choices": CLASSES} for i in range(4)])
    path = tmp_path / "round_0001.answers.jsonl"
    path.write_text(
        "".join(json.dumps({"index": i, "label": "cat", "worker": w}) + "\n" for i in range(4) for w in "ab")
    )
    given = MACE(n_iter=5)
    oracle = CrowdFileOracle(str(tmp_path), answers_per_item=2, aggregator=given, wait=False)
    assert oracle.collect(1).labels == [0, 0, 0, 0]  # nobody said dog: still a class (declared from the choices)
    assert isinstance(oracle.aggregator_, MACE) and oracle.aggregator_ is not given and not hasattr(given, "probas_")
    ds = CrowdFileOracle(str(tmp_path), answers_per_item=2, aggregator="dawid_skene", wait=False).collect(1)
    assert ds is not None and ds.labels == [0, 0, 0, 0]  # Dawid-Skene needs two classes: the choices give them
    with pytest.raises(ValueError, match=r"aggregator: expected 'majority' or one of .* got 'gold_mv'"):
        CrowdFileOracle(str(tmp_path), aggregator="gold_mv")
    with pytest.raises(ValueError, match=r"aggregator: expected a name or an Aggregator"):
        CrowdFileOracle(str(tmp_path), aggregator=3)


def test_the_labelling_server_counts_answers_without_workers_one_by_one(tmp_path):
    from trinity_lightning.rounds.oracle import append_answer
    from trinity_lightning.rounds.web import LabelStore, RejectedAnswerError

    write_queries(tmp_path, 1, [{"index": i, "kind": "class", "choices": CLASSES} for i in (3, 4)])
    store = LabelStore(tmp_path, answers_per_item=2)
    path = tmp_path / "round_0001.answers.jsonl"
    append_answer(path, {"index": 3, "label": "cat"})  # another tool, no worker names
    assert store.answer(1, 4, "dog", "ann")["worker"] == "ann"  # the store has read the first line
    append_answer(path, {"index": 3, "label": "dog"})  # read incrementally: still a second person
    with pytest.raises(RejectedAnswerError, match=r"index 3 already has 2 answer\(s\) from other people") as err:
        store.answer(1, 3, "cat", "cy")
    assert err.value.status == 409
    assert store.state("ann")["counts"] == {"3": 2, "4": 1}
