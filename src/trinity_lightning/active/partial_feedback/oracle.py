"""Oracles that answer binary questions "Is this a <composite>?": simulated from gold labels, or a human.

:class:`PartialFeedback` talks to every oracle through the round engine's protocol
(:class:`~trinity_lightning.rounds.Oracle`: ``query(round, items)`` / ``collect(round) -> answers | None``) with
yes/no :class:`~trinity_lightning.rounds.Query` items. :class:`SimulatedBinaryOracle` answers from gold labels
(and keeps ``ask`` for :func:`~trinity_lightning.active.partial_feedback.ask_questions`); a person answers
through :class:`~trinity_lightning.rounds.FileOracle`'s files with ``trinity label``.

Deprecated (kept for one release): :class:`FileBinaryOracle` (one ``questions.jsonl`` with an ``"answer"``
field), :class:`ActiveFileBinaryOracle`, :class:`AnswersPending` (pending is state now, never an exception),
:func:`answer_in_terminal` and ``python -m trinity_lightning.active.partial_feedback.oracle`` (use
``trinity label``).
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from trinity_lightning.data import atomic_write_text
from trinity_lightning.rounds.oracle import Answers, Oracle, Query

_YES = {"y", "yes", "true", "1"}
_NO = {"n", "no", "false", "0"}


class AnswersPending(RuntimeError):  # noqa: N818 - it is a state, not a failure
    """Raised by a human oracle while some questions of the batch have no answer yet."""

    def __init__(self, path: Path, missing: int, how: str | None = None) -> None:
        self.path, self.missing = path, missing
        how = how or f"edit the file or run `python -m trinity_lightning.active.partial_feedback.oracle {path}`"
        super().__init__(f"{missing} question(s) in {path} have no answer yet; answer them ({how}) and run again")


class BinaryOracle(Protocol):
    """Anything that answers a batch of ``(example, question id)`` pairs with booleans."""

    def ask(self, examples: torch.Tensor, questions: torch.Tensor) -> torch.Tensor: ...


def _deprecated(name: str, instead: str) -> None:
    warnings.warn(f"{name} is deprecated; {instead}", DeprecationWarning, stacklevel=3)


class SimulatedBinaryOracle(Oracle):
    """Answers from gold labels: "yes" iff the example's class lies under the question's node.

    Args:
        labels: ``(N,)`` gold class ids of the pool.
        question_masks: ``(Q, C)`` boolean question masks (:meth:`ClassHierarchy.question_masks`).

    Example:
        >>> oracle = SimulatedBinaryOracle(torch.tensor([0, 2]), torch.tensor([[True, True, False]]))
        >>> oracle.ask(torch.tensor([0, 1]), torch.tensor([0, 0])).tolist()
        [True, False]
        >>> oracle.query(1, [Query(1, "yesno", question_id=0)]); oracle.collect(1)
        Answers(indices=[1], labels=[False])
    """

    def __init__(self, labels: Any, question_masks: torch.Tensor) -> None:
        self.labels = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
        self.question_masks = torch.as_tensor(question_masks, dtype=torch.bool)
        c = self.question_masks.shape[1]
        if self.labels.numel() and (int(self.labels.min()) < 0 or int(self.labels.max()) >= c):
            raise ValueError(
                f"labels: expected class ids in [0, {c}), got [{int(self.labels.min())}, {int(self.labels.max())}]"
            )
        self.asked = 0
        self._batches: dict[int, list[tuple[int, int]]] = {}

    def ask(self, examples: torch.Tensor, questions: torch.Tensor) -> torch.Tensor:
        """``(B,)`` booleans for the pairs ``(examples[b], questions[b])``."""
        self.asked += int(torch.as_tensor(examples).numel())
        return self.question_masks[torch.as_tensor(questions), self.labels[torch.as_tensor(examples)]]

    def query(self, round: int, items: Sequence[Query | int], datamodule: Any = None) -> None:
        """Remember the round's yes/no queries (each needs its ``question_id``)."""
        pairs = []
        for q in items:
            if not isinstance(q, Query) or q.question_id is None:
                raise ValueError(f"items: a binary oracle needs yes/no Query items with a question_id, got {q!r}")
            pairs.append((q.index, q.question_id))
        self._batches[round] = pairs

    def collect(self, round: int) -> Answers | None:
        pairs = self._batches.pop(round, None)
        if pairs is None:
            raise KeyError(f"round: no batch was queried for round {round}")
        examples = torch.tensor([e for e, _ in pairs], dtype=torch.int64)
        answers = self.ask(examples, torch.tensor([q for _, q in pairs], dtype=torch.int64))
        return Answers([e for e, _ in pairs], [bool(a) for a in answers.tolist()])


def parse_answer(value: Any) -> bool | None:
    """``"y"/"yes"/true/1`` -> True, ``"n"/"no"/false/0`` -> False, ``None``/``""`` -> None (unanswered)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _YES:
        return True
    if text in _NO:
        return False
    raise ValueError(f"answer: expected y/n, got {value!r}")


def read_questions_file(path: str | Path) -> list[dict[str, Any]]:
    """Read a questions JSONL file; a malformed line is reported (file and line) with a warning and skipped."""
    path = Path(path)
    rows: list[dict[str, Any]] = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or "example" not in row or "question_id" not in row:
                raise ValueError("expected an object with 'example' and 'question_id'")
            row["answer"] = parse_answer(row.get("answer"))
        except ValueError as err:
            warnings.warn(f"{path}, line {line_no}: {err}; line skipped", stacklevel=2)
            continue
        row["_line"] = line_no
        rows.append(row)
    return rows


def write_questions_file(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """Rewrite the questions file atomically (temp file, fsync, rename)."""
    text = "".join(json.dumps({k: v for k, v in row.items() if not k.startswith("_")}) + "\n" for row in rows)
    atomic_write_text(path, text)


class FileBinaryOracle:
    """A human answers through a JSONL file (see the module docstring).

    Args:
        path: the questions file.
        question_names: node name per question id, used in the question text ("Is this a <name>?").
        describe: optional ``example index -> str`` (e.g. an image path) written as ``"example_info"``.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "questions.jsonl"
        >>> oracle = FileBinaryOracle(path, ["animal", "cat"])
        >>> try:
        ...     oracle.ask(torch.tensor([4]), torch.tensor([1]))
        ... except AnswersPending as pending:
        ...     print(pending.missing)
        1
        >>> rows = read_questions_file(path); rows[0]["question"]
        'Is this a cat?'
        >>> rows[0]["answer"] = "y"; write_questions_file(path, rows)
        >>> oracle.ask(torch.tensor([4]), torch.tensor([1])).tolist()
        [True]
    """

    def __init__(
        self, path: str | Path, question_names: Sequence[str], describe: Callable[[int], str] | None = None
    ) -> None:
        _deprecated("FileBinaryOracle", "PartialFeedback(questions_file=FOLDER) writes the round engine's files")
        self.path = Path(path)
        self.question_names = list(question_names)
        self.describe = describe

    def question_text(self, question_id: int) -> str:
        """The wording shown to the annotator."""
        return question_text(self.question_names[question_id])

    def answered(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every answered row of the file: ``(examples, question ids, answers)``."""
        return answered_questions(self.path)

    def ask(self, examples: torch.Tensor, questions: torch.Tensor) -> torch.Tensor:
        """Answers for the batch; writes the unanswered questions and raises :class:`AnswersPending`."""
        pairs = [
            (int(e), int(q)) for e, q in zip(torch.as_tensor(examples).tolist(), torch.as_tensor(questions).tolist())
        ]
        for _, q in pairs:
            if not 0 <= q < len(self.question_names):
                raise ValueError(f"questions: question id {q} out of range [0, {len(self.question_names)})")
        known: dict[tuple[int, int], bool | None] = {}
        rows = read_questions_file(self.path) if self.path.exists() else []
        for row in rows:
            known[(int(row["example"]), int(row["question_id"]))] = row["answer"]
        missing = [p for p in pairs if known.get(p) is None]
        if missing:
            wanted = set(pairs)  # answered rows are never dropped: they are a human's work
            kept = [r for r in rows if r["answer"] is not None or (int(r["example"]), int(r["question_id"])) in wanted]
            have = {(int(r["example"]), int(r["question_id"])) for r in kept}
            for e, q in pairs:
                if (e, q) not in have:
                    new: dict[str, Any] = {
                        "example": e,
                        "question_id": q,
                        "question": self.question_text(q),
                        "answer": None,
                    }
                    if self.describe is not None:
                        new["example_info"] = self.describe(e)
                    kept.append(new)
                    have.add((e, q))
            write_questions_file(self.path, kept)
            raise AnswersPending(self.path, len(missing))
        return torch.tensor([bool(known[p]) for p in pairs], dtype=torch.bool)


class ActiveFileBinaryOracle:
    """Ask through the active-learning oracle's files, so a human answers with ``trinity label``.

    Each batch becomes ``DIR/round_NNNN.queries.jsonl`` of
    :class:`~trinity_lightning.active.oracles.FileOracle` with choices ``no``/``yes`` and the question in the
    example (``{"question": "Is this a dog?", "question_id": 7}``); ``trinity label DIR/round_NNNN.queries.jsonl``
    asks them in the terminal and appends each answer at once to ``round_NNNN.answers.jsonl``. A batch left
    unanswered when the run stopped must be finished before a new one is written.

    Args:
        directory: folder of the query/answer files.
        question_names: node name per question id.
        wait: block until the batch is answered (polling) instead of raising :class:`AnswersPending`.
        poll_seconds: polling interval while waiting.
        timeout: stop waiting after this many seconds.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> oracle = ActiveFileBinaryOracle(folder, ["animal", "cat", "dog"])
        >>> try:
        ...     oracle.ask(torch.tensor([4]), torch.tensor([1]))
        ... except AnswersPending as pending:
        ...     print(pending.path.name)
        round_0001.queries.jsonl
        >>> _ = (folder / "round_0001.answers.jsonl").write_text('{"index": 4, "label": "yes"}\\n')
        >>> oracle.ask(torch.tensor([4]), torch.tensor([1])).tolist()
        [True]
    """

    CHOICES = ("no", "yes")

    def __init__(
        self,
        directory: str | Path,
        question_names: Sequence[str],
        wait: bool = False,
        poll_seconds: float = 2.0,
        timeout: float | None = None,
    ) -> None:
        from trinity_lightning.active.oracles import FileOracle

        _deprecated("ActiveFileBinaryOracle", "PartialFeedback(questions_file=FOLDER) uses FileOracle directly")
        self.question_names = list(question_names)
        self._asking: dict[int, int] = {}
        self.files = FileOracle(
            str(directory),
            wait=wait,
            poll_seconds=poll_seconds,
            timeout=timeout,
            choices=list(self.CHOICES),
            render=self._render,
        )
        self.directory = Path(directory)

    def _render(self, datamodule: Any, index: int) -> dict[str, Any]:
        q = self._asking[index]
        return {"question": question_text(self.question_names[q]), "question_id": q}

    def _rounds(self) -> list[int]:
        found = []
        for path in self.directory.glob("round_*.queries.jsonl"):
            try:
                found.append(int(path.name[len("round_") :].split(".")[0]))
            except ValueError:
                continue
        return sorted(found)

    def _pairs(self, round_: int) -> list[tuple[int, int]]:
        pairs = []
        for line in self.files.queries_path(round_).read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                pairs.append((int(row["index"]), int(row["example"]["question_id"])))
        return pairs

    def answered(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every answered question of every batch: ``(examples, question ids, answers)``."""
        from trinity_lightning.active.oracles import read_answers

        ex: list[int] = []
        qs: list[int] = []
        ans: list[bool] = []
        for round_ in self._rounds():
            got, _ = read_answers(self.files.answers_path(round_), list(self.CHOICES))
            for e, q in self._pairs(round_):
                if e in got:
                    ex.append(e)
                    qs.append(q)
                    ans.append(got[e] == 1)
        return (
            torch.tensor(ex, dtype=torch.int64),
            torch.tensor(qs, dtype=torch.int64),
            torch.tensor(ans, dtype=torch.bool),
        )

    def ask(self, examples: torch.Tensor, questions: torch.Tensor) -> torch.Tensor:
        """Answers for the batch; writes a new query file and raises :class:`AnswersPending` until answered."""
        pairs = [
            (int(e), int(q)) for e, q in zip(torch.as_tensor(examples).tolist(), torch.as_tensor(questions).tolist())
        ]
        if len({e for e, _ in pairs}) != len(pairs):
            raise ValueError("examples: at most one question per example in a batch")
        rounds = self._rounds()
        if rounds:
            last = rounds[-1]
            got = self.files.collect(last)
            if got is not None and self._pairs(last) == pairs:
                return torch.tensor([label == 1 for label in got.labels or []], dtype=torch.bool)
            if got is None:
                raise AnswersPending(
                    self.files.queries_path(last),
                    len(self._pairs(last)),
                    f"trinity label {self.files.queries_path(last)}",
                )
        round_ = rounds[-1] + 1 if rounds else 1
        self._asking = dict(pairs)
        self.files.query(round_, [e for e, _ in pairs], datamodule=self)
        got = self.files.collect(round_)
        if got is None:
            raise AnswersPending(
                self.files.queries_path(round_), len(pairs), f"trinity label {self.files.queries_path(round_)}"
            )
        return torch.tensor([label == 1 for label in got.labels or []], dtype=torch.bool)


def question_text(name: str) -> str:
    """``"carnivore.n.01"`` -> ``"Is this a carnivore?"``."""
    return f"Is this a {name.split('.n.')[0].replace('_', ' ')}?"


def answered_questions(path: str | Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every answered row of a questions file as ``(examples, question ids, answers)``."""
    path = Path(path)
    rows = [r for r in read_questions_file(path) if r["answer"] is not None] if path.exists() else []
    return (
        torch.tensor([int(r["example"]) for r in rows], dtype=torch.int64),
        torch.tensor([int(r["question_id"]) for r in rows], dtype=torch.int64),
        torch.tensor([bool(r["answer"]) for r in rows], dtype=torch.bool),
    )


def answer_in_terminal(
    path: str | Path, input_fn: Callable[[str], str] = input, print_fn: Callable[[str], None] = print
) -> int:
    """Ask every unanswered question of ``path`` in the terminal; each answer is saved at once.

    Type ``y``/``n``; ``s`` skips a question, ``q`` stops (answers given so far are kept).
    Returns the number of questions answered in this session. Deprecated: ``trinity label`` answers yes/no
    queries of the round engine's files.
    """
    _deprecated("answer_in_terminal", "use `trinity label DIR/round_NNNN.queries.jsonl`")
    path = Path(path)
    rows = read_questions_file(path)
    answered = 0
    todo = [r for r in rows if r["answer"] is None]
    print_fn(f"{len(todo)} question(s) to answer in {path} (y/n, s = skip, q = quit)")
    for row in todo:
        info = f" [{row['example_info']}]" if row.get("example_info") else ""
        while True:
            reply = input_fn(f"example {row['example']}{info}: {row.get('question', '?')} ").strip().lower()
            if reply in ("q", "quit"):
                return answered
            if reply in ("s", "skip"):
                break
            try:
                value = parse_answer(reply)
            except ValueError:
                value = None
            if value is None:
                print_fn("please answer y or n (s = skip, q = quit)")
                continue
            row["answer"] = "y" if value else "n"
            write_questions_file(path, rows)
            answered += 1
            break
    return answered


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m trinity_lightning.active.partial_feedback.oracle QUESTIONS.jsonl`` (deprecated).

    A ``round_NNNN.queries.jsonl`` file is handed to ``trinity label``; an old questions file is still answered.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) == 1 and args[0].endswith(".queries.jsonl"):
        from trinity_lightning.active.cli import label_main

        return label_main(args)
    print("note: this command is deprecated; use `trinity label`", file=sys.stderr)
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: python -m trinity_lightning.active.partial_feedback.oracle QUESTIONS.jsonl")
        return 0 if args and args[0] in ("-h", "--help") else 2
    if not Path(args[0]).exists():
        print(f"questions file {args[0]} does not exist", file=sys.stderr)
        return 2
    answer_in_terminal(args[0])
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
