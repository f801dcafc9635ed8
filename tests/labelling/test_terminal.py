"""The terminal labeller's fixes: wrapped long sentences, span shorthand, tokens shown verbatim, undo, Ctrl-C."""

from __future__ import annotations

import io
import json
import re
import sys

import pytest

from tests.labelling.conftest import write_queries
from trinity_lightning.active.cli import label_main, parse_spans

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def _feed(monkeypatch, text):
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


def _lines(tmp_path):
    return [json.loads(x) for x in (tmp_path / "round_0001.answers.jsonl").read_text().splitlines()]


def test_a_41_token_sentence_wraps_at_80_columns_and_markup_tokens_show_verbatim(tmp_path, monkeypatch, capsys):
    tokens = [f"word{i:02d}" for i in range(37)] + ["[bold]", "[/]", "{{x}}", "<script>"]
    q = write_queries(tmp_path, 1, [{"index": 0, "kind": "tags", "example": {"tokens": tokens}, "choices": TAGS}])
    monkeypatch.setenv("COLUMNS", "80")
    _feed(monkeypatch, "0-1 PER, 38 LOC\n")
    assert label_main([str(q)]) == 0
    out = capsys.readouterr().out
    for i, token in enumerate(tokens):
        assert f"{i}:{token}" in out, token  # every token whole, with its number
    token_lines = [line for line in out.splitlines() if "word" in line]
    assert "…" not in out and len(token_lines) > 1 and max(len(line) for line in token_lines) <= 80
    assert _lines(tmp_path)[0]["label"] == ["B-PER", "I-PER"] + ["O"] * 36 + ["B-LOC", "O", "O"]
    assert "readline" in sys.modules  # arrow keys edit the line instead of inserting ^[[D


def test_undo_goes_back_and_the_new_answer_wins(tmp_path, monkeypatch, capsys):
    q = write_queries(
        tmp_path,
        1,
        [{"index": i, "kind": "class", "example": {"text": f"t{i}"}, "choices": ["a", "b"]} for i in (4, 5)],
    )
    _feed(monkeypatch, "u\na\nu\nb\nb\n")  # nothing to undo; a; undo -> item 4 again; b; then item 5: b
    assert label_main([str(q), "--worker", "ann"]) == 0
    out = capsys.readouterr().out
    assert "nothing to undo yet" in out and "your answer: a" in out
    assert [(r["index"], r["label"]) for r in _lines(tmp_path)] == [(4, "a"), (4, "b"), (5, "b")]
    from trinity_lightning.rounds import FileOracle

    assert FileOracle(str(tmp_path), wait=False).collect(1).labels == [1, 1]


def test_ctrl_c_stops_cleanly_and_keeps_the_answers(tmp_path, monkeypatch, capsys):
    q = write_queries(tmp_path, 1, [{"index": i, "kind": "yesno", "question": "Is this a [b]dog[/b]?"} for i in (1, 2)])
    answers = iter(["y"])

    def fake_input(*args, **kwargs):
        try:
            return next(answers)
        except StopIteration:
            raise KeyboardInterrupt from None

    monkeypatch.setattr("rich.console.Console.input", fake_input)
    assert label_main([str(q)]) == 130
    out = capsys.readouterr().out
    assert "stopped (Ctrl-C): 1 answered" in out and "Traceback" not in out
    assert "Is this a [b]dog[/b]?" in out  # the question is text, not markup
    assert _lines(tmp_path) == [{"index": 1, "label": "yes"}]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0-1 PER, 3 LOC", ["B-PER", "I-PER", "O", "B-LOC"]),
        ("2-3 LOC", ["O", "O", "B-LOC", "I-LOC"]),
        ("B-PER I-PER O O", None),
        ("0 3", None),  # tag ids, not a span
    ],
)
def test_span_shorthand(raw, expected):
    assert parse_spans(raw, ["Anna", "Smith", "in", "Rome"], TAGS) == expected


@pytest.mark.parametrize(
    ("raw", "match"),
    [("0-1 PER, 1 LOC", "overlaps"), ("3-5 PER", "outside"), ("2-1 PER", "outside"), ("0 DOG", "unknown entity")],
)
def test_span_shorthand_errors(raw, match):
    with pytest.raises(ValueError, match=match):
        parse_spans(raw, ["Anna", "Smith", "in", "Rome"], TAGS)


def test_plain_tag_sets_take_spans_too():
    assert parse_spans("0-1 PER", ["a", "b", "c"], ["O", "PER"]) == ["PER", "PER", "O"]


def test_relabel_queries_are_marked_with_who_answered_before(tmp_path, monkeypatch, capsys):
    choices = ["cat", "dog"]
    q = write_queries(
        tmp_path,
        1,
        [
            {"index": 1, "kind": "class", "example": {"text": "new"}, "choices": choices},
            {"index": 2, "kind": "class", "example": {"text": "again"}, "choices": choices,
             "relabel": True, "answered_by": ["bo", "[red]cy"]},
            {"index": 3, "kind": "class", "example": {"text": "unknown"}, "choices": choices, "relabel": True},
        ],
    )  # fmt: skip
    _feed(monkeypatch, "cat\ndog\ncat\n")
    assert label_main([str(q), "--worker", "ann"]) == 0
    out = capsys.readouterr().out
    items = re.split(r"item \d/3", out)[1:]  # one chunk per item (its rule line says "item N/3")
    assert "RELABEL" not in items[0]
    assert "RELABEL another label of an item that is labelled already; answered before by bo, [red]cy" in items[1]
    assert "answered it before" not in items[1]  # ann did not
    assert "RELABEL another label of an item that is labelled already; earlier annotators not recorded" in items[2]
    assert [r["label"] for r in _lines(tmp_path)] == ["cat", "dog", "cat"]


def test_relabel_warns_a_worker_who_answered_the_item_before(tmp_path, monkeypatch, capsys):
    from rich.text import Text

    from trinity_lightning.active.cli import relabel_note
    from trinity_lightning.rounds import Query

    query = {"index": 2, "kind": "class", "choices": ["cat", "dog"], "relabel": True, "answered_by": ["bo"]}
    q = write_queries(tmp_path, 1, [query])
    _feed(monkeypatch, "q\n")
    assert label_main([str(q), "--worker", "bo"]) == 0
    assert "you (bo) answered it before: someone else should" in capsys.readouterr().out
    note = relabel_note(Query.from_json(query), "bo")
    assert isinstance(note, Text) and note.plain.startswith("RELABEL ")
    styles = {note.plain[span.start : span.end]: str(span.style) for span in note.spans}
    assert styles["RELABEL"] == "bold black on yellow" and styles["bo"] == "bold"
