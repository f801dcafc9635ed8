import io
import json

import pytest

from trinity_lightning.active import FileOracle
from trinity_lightning.active.cli import label_main
from trinity_lightning.active.oracles import read_answers
from trinity_lightning.cli import main as trinity_main


def _queries(tmp_path, examples, choices, kind="tags"):
    path = tmp_path / "round_0001.queries.jsonl"
    path.write_text(
        "".join(
            json.dumps({"index": i, "round": 1, "example": ex, "choices": choices, "kind": kind}) + "\n"
            for i, ex in examples
        )
    )
    return path


def _feed(monkeypatch, text):
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


TAGS = ["O", "B-PER", "I-PER", "B-LOC"]


def test_label_sentences_from_stdin(tmp_path, monkeypatch, capsys):
    q = _queries(
        tmp_path,
        [(4, {"tokens": ["Anna", "Smith", "left"]}), (9, {"tokens": ["in", "Rome"]}), (2, {"tokens": ["ok"]})],
        TAGS,
    )
    # bad count -> re-prompt; unknown tag -> re-prompt; ids work; Enter = all O
    _feed(monkeypatch, "B-PER I-PER\nB-PER I-PER X\nB-PER I-PER O\n0 3\n\n")
    assert label_main([str(q)]) == 0
    out = capsys.readouterr().out
    assert "expected 3 tags" in out and "unknown label 'X'" in out and "Anna" in out
    answers, problems = read_answers(tmp_path / "round_0001.answers.jsonl", TAGS)
    assert answers == {4: [1, 2, 0], 9: [0, 3], 2: [0]} and not problems


def test_each_answer_saved_at_once_and_resume(tmp_path, monkeypatch):
    q = _queries(tmp_path, [(1, {"tokens": ["a"]}), (2, {"tokens": ["b"]}), (3, {"tokens": ["c"]})], TAGS)
    _feed(monkeypatch, "B-LOC\n")  # stdin ends after one answer (as if the annotator's session died)
    assert label_main([str(q)]) == 0
    lines = (tmp_path / "round_0001.answers.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == [{"index": 1, "label": ["B-LOC"]}]
    with (tmp_path / "round_0001.answers.jsonl").open("a") as f:
        f.write('{"index": 2, "lab')  # a torn last line
    _feed(monkeypatch, "s\nO\n")  # index 2 is open again (torn line): skip it, answer 3
    assert label_main([str(q)]) == 0
    answers, problems = read_answers(tmp_path / "round_0001.answers.jsonl", TAGS)
    assert set(answers) == {1, 3} and len(problems) == 1 and ":2:" in problems[0]


def test_label_classes_and_quit(tmp_path, monkeypatch, capsys):
    q = _queries(tmp_path, [(7, {"features": [0.1, 0.2]}), (8, {"features": [0.3]})], ["cat", "dog"], "class")
    _feed(monkeypatch, "\nbird\n1\nq\n")
    assert label_main([str(q)]) == 0
    out = capsys.readouterr().out
    assert "type a class name" in out and "unknown label 'bird'" in out and "stopped" in out
    assert read_answers(tmp_path / "round_0001.answers.jsonl", ["cat", "dog"])[0] == {7: 1}


def test_label_errors_and_dispatch(tmp_path, capsys, monkeypatch):
    assert label_main([str(tmp_path / "missing.jsonl")]) == 2
    bad = tmp_path / "bad.queries.jsonl"
    bad.write_text('{"round": 1}\n')
    assert label_main([str(bad)]) == 2
    assert "bad.queries.jsonl:1" in capsys.readouterr().out
    q = _queries(tmp_path, [(1, {"tokens": ["a"]})], TAGS)
    _feed(monkeypatch, "B-PER\n")
    assert trinity_main(["label", str(q)]) == 0  # `trinity label` reaches label_main


def test_file_oracle_roundtrip_with_cli(tmp_path, monkeypatch):
    from trinity_lightning.active.ner import TaggedDataset, Vocabulary
    from trinity_lightning.data import TaggedSentence

    class DM:
        tag_names = TAGS
        label_field = "tags"

        def __init__(self):
            sents = [TaggedSentence(["Anna", "sang"], ["B-PER", "O"]), TaggedSentence(["Rome"], ["B-LOC"])]
            self.pool_set = TaggedDataset(sents, Vocabulary.build(sents, tag_names=TAGS))

    oracle = FileOracle(str(tmp_path), wait=False)
    oracle.query(1, [0, 1], DM())
    assert oracle.collect(1) is None
    _feed(monkeypatch, "B-PER O\nB-LOC\n")
    assert label_main([str(oracle.queries_path(1))]) == 0
    answers = oracle.collect(1)
    assert answers.indices == [0, 1] and answers.labels == [[1, 0], [3]]


def test_file_oracle_wait_timeout(tmp_path):
    oracle = FileOracle(str(tmp_path), wait=True, poll_seconds=0.01, timeout=0.05)
    oracle.query(1, [0], None)
    assert oracle.collect(1) is None
    with pytest.raises(ValueError, match="poll_seconds"):
        FileOracle(str(tmp_path), poll_seconds=0)


def test_label_yes_no_questions_with_a_worker(tmp_path, monkeypatch, capsys):
    """`trinity label` answers the yes/no queries of PartialFeedback too (one tool for the three kinds)."""
    from trinity_lightning.rounds import Query

    oracle = FileOracle(str(tmp_path), wait=False)
    oracle.query(1, [Query(5, "yesno", question="Is this a dog?", question_id=3), Query(6, "yesno", question_id=1)])
    _feed(monkeypatch, "maybe\ny\nn\n")
    assert label_main([str(oracle.queries_path(1)), "--worker", "ann"]) == 0
    out = capsys.readouterr().out
    assert "Is this a dog?" in out and "expected yes or no" in out
    lines = [json.loads(x) for x in oracle.answers_path(1).read_text().splitlines()]
    assert lines[0] == {"index": 5, "label": "yes", "question_id": 3, "worker": "ann"}
    answers = oracle.collect(1)
    assert answers.labels == [True, False] and answers.workers == ["ann", "ann"]


def test_every_answer_is_validated_when_read(tmp_path):
    """Issue 14 item 19: wrong tag counts, unknown tags, BIO violations were accepted (or broadcast); "3" as an
    index was dropped. Each bad line is rejected with file:line: reason, the others are kept."""
    oracle = FileOracle(str(tmp_path), wait=False)
    q = _queries(tmp_path, [(1, {"tokens": ["Anna", "Smith", "left"]}), (2, {"tokens": ["in", "Rome"]})], TAGS)
    assert oracle.pending_indices(1) == [1, 2] and q == oracle.queries_path(1)
    lines = [
        {"index": 1, "label": "B-PER"},  # one tag for three tokens (used to be broadcast)
        {"index": 1, "label": ["B-PER", "I-PER"]},  # two tags for three tokens
        {"index": 1, "label": "O I-PER O"},  # BIO: I-PER after O
        {"index": 1, "label": "B-PER I-LOC O"},  # unknown tag
        {"index": 2, "label": "O B-LOC"},  # valid: a string of tags, as the docstring promises
        {"index": 9, "label": "O"},  # not asked
        {"index": 1, "label": ["1", "2", "0"]},  # valid: ids as strings ("3" as an index)
    ]
    oracle.answers_path(1).write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pytest.warns(UserWarning, match="answers.jsonl:1: expected 3 tags"):
        answers = oracle.collect(1)
    where, reasons = zip(*(p.split(": ", 1) for p in oracle.problems))
    assert [w.rsplit(":", 1)[1] for w in where] == ["1", "2", "3", "4", "6"]
    assert reasons[0] == "expected 3 tags (one per token), got 1"
    assert "follows 'O'" in reasons[2] and "unknown label 'I-LOC'" in reasons[3] and "not asked" in reasons[4]
    assert answers.indices == [1, 2] and answers.labels == [[1, 2, 0], [0, 3]]
    classes = tmp_path / "c"
    oracle = FileOracle(str(classes), wait=False, choices=[str(d) for d in range(10)][::-1])  # names "9".."0"
    oracle.query(1, [0, 1])
    oracle.answers_path(1).write_text('{"index": 0, "label": "3"}\n{"index": 1, "label": 3}\n')
    assert oracle.collect(1).labels == [6, 3]  # a name first ("3" is class 6 here), then an id


def test_invalid_answers_never_reach_the_labels_file(tmp_path):
    from trinity_lightning.active import ActiveLearning

    from ._helpers import datamodule, mlp
    from .test_campaign import _trainer

    oracle = FileOracle(str(tmp_path / "q"), wait=False, choices=["a", "b", "c"])
    dm = datamodule(tmp_path, initial_labelled=12)
    _trainer(tmp_path, ActiveLearning("margin", query_size=2, budget=14, oracle=oracle)).fit(mlp(), datamodule=dm)
    first, second = oracle.pending_indices(1)
    oracle.answers_path(1).write_text(
        json.dumps({"index": first, "label": "d"}) + "\n" + json.dumps({"index": second, "label": 7}) + "\n"
    )
    with pytest.warns(UserWarning, match="unknown label 'd'"):
        assert oracle.collect(1) is None  # both rejected: the round stays pending
    saved = json.loads((tmp_path / "labels.json").read_text())
    assert str(first) not in saved["labelled"] and str(second) not in saved["labelled"]
