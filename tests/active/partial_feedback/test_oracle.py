"""Oracles: simulated answers from gold, the JSONL human path (pending, resume, malformed lines, terminal)."""

from __future__ import annotations

import json

import pytest
import torch

from trinity_lightning.active.partial_feedback import (
    AnswersPending,
    FileBinaryOracle,
    PartialLabels,
    SimulatedBinaryOracle,
    answer_in_terminal,
    ask_questions,
    get_question_strategy,
)
from trinity_lightning.active.partial_feedback.oracle import main, read_questions_file

Q = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.bool)
NAMES = ["animal.n.01", "cat", "dog", "car"]


def test_simulated_oracle():
    oracle = SimulatedBinaryOracle(torch.tensor([0, 1, 2]), Q)
    assert oracle.ask(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 0, 0, 3])).tolist() == [True, True, False, True]
    assert oracle.asked == 4
    with pytest.raises(ValueError, match="labels"):
        SimulatedBinaryOracle(torch.tensor([0, 3]), Q)


def test_file_oracle_pending_then_answered(tmp_path):
    path = tmp_path / "questions.jsonl"
    oracle = FileBinaryOracle(path, NAMES, describe=lambda i: f"img_{i}.png")
    with pytest.raises(AnswersPending, match="2 question"):
        oracle.ask(torch.tensor([3, 5]), torch.tensor([0, 3]))
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["question"] for r in rows] == ["Is this a animal?", "Is this a car?"]
    assert rows[0]["example_info"] == "img_3.png" and rows[0]["answer"] is None
    rows[0]["answer"] = "yes"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(AnswersPending, match="1 question"):  # still one missing; the answer is kept
        oracle.ask(torch.tensor([3, 5]), torch.tensor([0, 3]))
    assert read_questions_file(path)[0]["answer"] is True
    rows[1]["answer"] = "n"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert oracle.ask(torch.tensor([3, 5]), torch.tensor([0, 3])).tolist() == [True, False]
    # a new batch keeps every answered row (a human's work is never dropped)
    with pytest.raises(AnswersPending):
        oracle.ask(torch.tensor([7]), torch.tensor([1]))
    assert len(read_questions_file(path)) == 3


def test_malformed_lines_are_reported_and_skipped(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(
        '{"example": 1, "question_id": 0, "answer": "y"}\nnot json\n'
        '{"example": 2, "question_id": 0, "answer": "maybe"}\n{"example": 3, "question_id": 1, '
        '"answer": "n"}\n'
    )
    with pytest.warns(UserWarning, match=r"q.jsonl, line 2") as record:
        rows = read_questions_file(path)
    assert any("line 3" in str(w.message) and "y/n" in str(w.message) for w in record)
    assert [(r["example"], r["answer"]) for r in rows] == [(1, True), (3, False)]


def test_terminal_answers_are_saved_one_by_one(tmp_path):
    path = tmp_path / "q.jsonl"
    oracle = FileBinaryOracle(path, NAMES)
    with pytest.raises(AnswersPending):
        oracle.ask(torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3]))
    replies = iter(["y", "what", "n", "q"])
    seen: list[str] = []
    answered = answer_in_terminal(
        path, input_fn=lambda prompt: (seen.append(prompt), next(replies))[1], print_fn=lambda _: None
    )
    assert answered == 2 and "Is this a cat?" in seen[0]
    assert [r["answer"] for r in read_questions_file(path)] == [True, False, None]  # saved before quitting
    assert main([str(tmp_path / "missing.jsonl")]) == 2


def test_human_campaign_resumes_with_the_same_questions(tmp_path):
    """Questions asked through the file: stop, answer, start again -> nothing lost, nothing asked twice."""
    gold = torch.tensor([0, 1, 2, 0, 1, 2])
    path = tmp_path / "q.jsonl"
    state = PartialLabels(6, 3)
    strategy = get_question_strategy("uniform")
    for _ in range(10):
        try:
            ask_questions(strategy, state, Q, FileBinaryOracle(path, NAMES), budget=100, seed=0)
            break
        except AnswersPending:
            rows = read_questions_file(path)  # the "human" answers every pending question, then we resume
            for r in rows:
                if r["answer"] is None:
                    r["answer"] = "y" if bool(Q[r["question_id"], gold[r["example"]]]) else "n"
            path.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "_line"}) + "\n" for r in rows))
    assert state.labels().equal(gold)
    assert state.num_questions == len(read_questions_file(path))
