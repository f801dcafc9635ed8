"""The oracle protocol and its JSONL files: who answers a round's queries, and how answers come back.

Every oracle has two calls (and nothing ever raises because answers are missing):

* ``query(round, items)`` hands the round's :class:`Query` items to the annotator;
* ``collect(round)`` returns :class:`Answers` once every item of the round is answered, ``None`` while some
  are pending ("pending" is state: the campaign stops cleanly and resumes with ``ckpt_path=last``).

Three answer kinds share one schema: a **class** (a name or an id), a **tag sequence** (one tag per token)
and **yes/no** to a question ("Is this a dog?"). :class:`FileOracle` writes ``round_NNNN.queries.jsonl``
(one query per line)::

    {"round": 1, "index": 12, "kind": "class", "example": {...}, "choices": ["cat", "dog"]}
    {"round": 1, "index": 40, "kind": "tags", "example": {"tokens": ["EU", "rejects"]}, "choices": ["O", ...]}
    {"round": 1, "index": 7, "kind": "yesno", "question": "Is this a dog?", "question_id": 3,
     "choices": ["no", "yes"], "example": {...}}
    {"round": 2, "index": 12, "kind": "class", "example": {...}, "choices": ["cat", "dog"],
     "relabel": true, "answered_by": ["ann"]}           # a further label of an item ann already labelled

and reads ``round_NNNN.answers.jsonl`` (append-only; the last answer of an index wins)::

    {"index": 12, "label": "dog", "worker": "ann"}          # or an id: 1, or "1"
    {"index": 40, "label": ["B-ORG", "O"]}                  # or "B-ORG O", or ids
    {"index": 7, "label": "yes"}                            # yes/no/y/n/true/false

``worker`` is optional (crowd sources). A **relabel** query (from
:class:`~trinity_lightning.active.ActiveRelabelling`) asks for one more label of an item that already has some:
it carries ``"relabel": true`` and ``answered_by``, the workers who labelled it already, so a tool asks someone
else (the web labeller refuses their answers); if one of them answers anyway, their new answer replaces their own
earlier one, never another worker's. Every answer is validated when it is read (:func:`validate_answer`:
class in the choices, one tag per token, tags in the tag set, BIO order, yes/no); an invalid line is
reported as ``file:line: reason`` and skipped, the other lines are kept, and only valid answers ever reach
a labels file. ``trinity label`` answers all three kinds in the terminal; any other tool (a web page, Label
Studio export, a script) only has to append answer lines.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trinity_lightning.data.atomic import atomic_write_text

__all__ = [
    "KINDS",
    "YES_NO",
    "Answers",
    "FileOracle",
    "Oracle",
    "Query",
    "append_answer",
    "default_render",
    "parse_label",
    "read_answer_file",
    "read_query_file",
    "validate_answer",
]

KINDS = ("class", "tags", "yesno")
YES_NO = ("no", "yes")
_YES = {"y", "yes", "true", "1"}
_NO = {"n", "no", "false", "0"}


@dataclass
class Query:
    """One item handed to an annotator.

    Attributes:
        index: dataset index of the example.
        kind: ``"class"``, ``"tags"`` or ``"yesno"``.
        example: what the annotator sees (JSON-able: ``{"tokens": [...]}``, ``{"features": ...}``, a path...).
        choices: class or tag names (``["no", "yes"]`` for yes/no).
        question: the question text (yes/no).
        question_id: the question's id (yes/no), echoed back by :meth:`FileOracle.collect`.
        relabel: ``True`` for a further label of an item that is labelled already (``None``: a new item).
        answered_by: with ``relabel``: the workers who labelled the item already (ask someone else).
    """

    index: int
    kind: str = "class"
    example: Any = None
    choices: list[str] | None = None
    question: str | None = None
    question_id: int | None = None
    relabel: bool | None = None
    answered_by: list[str] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind: expected one of {KINDS}, got {self.kind!r}")
        if self.kind == "yesno" and self.choices is None:
            self.choices = list(YES_NO)
        if self.relabel is not None and not isinstance(self.relabel, bool):
            raise ValueError(f'"relabel" must be true or false, got {self.relabel!r}')
        if self.answered_by is not None and (
            not isinstance(self.answered_by, list) or not all(isinstance(w, str) for w in self.answered_by)
        ):
            raise ValueError(f'"answered_by" must be a list of worker names, got {self.answered_by!r}')

    @property
    def tokens(self) -> list[str] | None:
        """The tokens of a tag-sequence query, when the example carries them."""
        return self.example.get("tokens") if isinstance(self.example, dict) else None

    def to_json(self, round: int) -> dict[str, Any]:
        record: dict[str, Any] = {"round": round, **asdict(self)}
        return {k: v for k, v in record.items() if v is not None or k in ("example", "choices")}

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Query:
        index = record["index"]
        if isinstance(index, bool) or not isinstance(index, int):
            raise ValueError(f'"index" must be an integer, got {index!r}')
        return cls(
            index=index,
            kind=record.get("kind", "class"),
            example=record.get("example"),
            choices=record.get("choices"),
            question=record.get("question"),
            question_id=record.get("question_id"),
            relabel=record.get("relabel"),
            answered_by=record.get("answered_by"),
        )


@dataclass
class Answers:
    """The answers of one round, in the order the items were queried.

    ``labels`` is ``None`` when the dataset's own (held-back) labels apply (a simulation); else class ids,
    tag-id lists or booleans. ``workers`` names who answered each item, when known. ``annotations``: with several
    answers per item (:class:`~trinity_lightning.rounds.web.CrowdFileOracle`), every person's answer to each item,
    ``[(worker, label), ...]`` per item (``worker`` ``None`` for an answer without one; labels as in ``labels``);
    ``labels`` is then their aggregate.
    """

    indices: list[int]
    labels: list[Any] | None = None
    workers: list[str | None] | None = field(default=None, repr=False, compare=False)
    annotations: list[list[tuple[str | None, Any]]] | None = field(default=None, repr=False, compare=False)


# --------------------------------------------------------------------------------------------- labels
def parse_label(raw: Any, choices: Sequence[str] | None) -> int | list[int]:
    """An answer as ids: an int, a choice name, a digit string, or a list of these (token tags).

    Example:
        >>> parse_label(["B-PER", "O"], ["O", "B-PER"]), parse_label("cat", ["dog", "cat"]), parse_label("2", None)
        ([1, 0], 1, 2)
    """
    if isinstance(raw, list):
        return [_one_label(v, choices) for v in raw]
    return _one_label(raw, choices)


def _one_label(raw: Any, choices: Sequence[str] | None) -> int:
    if isinstance(raw, bool):
        raise ValueError(f"label {raw!r} is a boolean, not a class")
    if isinstance(raw, int):
        if choices is not None and not 0 <= raw < len(choices):
            raise ValueError(f"label id {raw} is out of range [0, {len(choices)})")
        return raw
    if isinstance(raw, str):
        if choices is not None and raw in choices:
            return list(choices).index(raw)
        if raw.strip().lstrip("-").isdigit():
            return _one_label(int(raw), choices)
        raise ValueError(f"unknown label {raw!r}; expected one of {list(choices or [])} or an id")
    raise ValueError(f"label {raw!r} is neither an id nor a name")


def _is_bio(choices: Sequence[str]) -> bool:
    return bool(choices) and all(c == "O" or c[:2] in ("B-", "I-") for c in choices)


def _check_bio(tags: Sequence[str]) -> None:
    previous = "O"
    for position, tag in enumerate(tags):
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            raise ValueError(
                f"tag {position + 1} ({tag!r}) follows {previous!r}: an I- tag must continue B-/I- of its type"
            )
        previous = tag


def validate_answer(raw: Any, query: Query) -> Any:
    """Check one answer against its query and return it normalised (class id, tag ids, or a bool).

    Raises:
        ValueError: the reason, e.g. ``expected 3 tags (one per token), got 1``.

    Example:
        >>> q = Query(4, "tags", {"tokens": ["EU", "rejects", "it"]}, ["O", "B-ORG", "I-ORG"])
        >>> validate_answer("B-ORG O O", q), validate_answer([1, 0, 0], q)
        ([1, 0, 0], [1, 0, 0])
        >>> validate_answer("O I-ORG O", q)
        Traceback (most recent call last):
        ...
        ValueError: tag 2 ('I-ORG') follows 'O': an I- tag must continue B-/I- of its type
        >>> validate_answer("y", Query(7, "yesno", question="Is this a dog?"))
        True
    """
    if query.kind == "yesno":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower() if raw is not None else ""
        if text in _YES:
            return True
        if text in _NO:
            return False
        raise ValueError(f"expected yes or no, got {raw!r}")
    choices = query.choices
    if query.kind == "tags":
        parts = raw.split() if isinstance(raw, str) else raw
        if not isinstance(parts, list):
            raise ValueError(f"expected one tag per token (a list or a space-separated string), got {raw!r}")
        tokens = query.tokens
        if tokens is not None and len(parts) != len(tokens):
            raise ValueError(f"expected {len(tokens)} tags (one per token), got {len(parts)}")
        ids = [_one_label(p, choices) for p in parts]
        if choices is not None and _is_bio(choices):
            _check_bio([choices[i] for i in ids])
        return ids
    if isinstance(raw, list):
        raise ValueError(f"expected one class, got a list {raw!r}")
    return _one_label(raw.strip() if isinstance(raw, str) else raw, choices)


# ---------------------------------------------------------------------------------------------- files
def read_query_file(path: Path) -> list[Query]:
    """The queries of a ``round_NNNN.queries.jsonl`` file (a malformed line is an error naming file:line)."""
    queries = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
            if not isinstance(record, dict):
                raise ValueError("not an object")
            queries.append(Query.from_json(record))
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}:{number}: not a query line ({err})") from None
    return queries


def read_answer_file(
    path: Path, queries: Sequence[Query] | None = None, choices: Sequence[str] | None = None
) -> tuple[dict[int, tuple[Any, str | None]], list[str]]:
    """Read an answers JSONL file: ``{index: (normalised label, worker)}`` (last answer wins) and problems.

    Every line is validated against its query (``queries``; without them, as a class among ``choices``).
    An invalid line is reported as ``"<file>:<line>: <reason>"`` and skipped; the other lines are kept.
    """
    answers: dict[int, tuple[Any, str | None]] = {}
    problems: list[str] = []
    if not path.exists():
        return answers, problems
    by_index = {q.index: q for q in queries} if queries is not None else None
    with path.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
                if not isinstance(record, dict) or "index" not in record or "label" not in record:
                    raise ValueError('expected an object with "index" and "label"')
                index = record["index"]
                if isinstance(index, bool) or not isinstance(index, int):
                    raise ValueError(f'"index" must be an integer, got {index!r}')
                worker = record.get("worker")
                if worker is not None and not isinstance(worker, str):
                    raise ValueError(f'"worker" must be a string, got {worker!r}')
                if by_index is None:
                    kind = "tags" if isinstance(record["label"], list) else "class"
                    query = Query(index, kind, choices=list(choices) if choices is not None else None)
                elif index not in by_index:
                    raise ValueError(f"index {index} was not asked in this round")
                else:
                    query = by_index[index]
                    asked = record.get("question_id")
                    if asked is not None and query.question_id is not None and asked != query.question_id:
                        raise ValueError(f"question_id {asked} answers another question than {query.question_id}")
                answers[index] = (validate_answer(record["label"], query), worker)
            except (json.JSONDecodeError, ValueError) as err:
                reason = err.msg if isinstance(err, json.JSONDecodeError) else str(err)
                problems.append(f"{path}:{number}: {reason}")
    return answers, problems


def append_answer(path: Path, record: dict[str, Any]) -> None:
    """Append one answer line, flushed and fsynced (a crash loses at most the line being written).

    A line cut short by an earlier crash is closed first so that it cannot swallow this one.
    """
    torn = False
    if path.exists() and path.stat().st_size:
        with path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            torn = handle.read(1) != b"\n"
    with path.open("a", encoding="utf-8") as handle:
        handle.write(("\n" if torn else "") + json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _to_plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def default_render(datamodule: Any, index: int) -> dict[str, Any]:
    """What an annotator sees: the tokens of a sentence, else the item's features as lists."""
    dataset = getattr(datamodule, "pool_set", None) or getattr(datamodule, "dataset", None)
    sentences = getattr(dataset, "sentences", None)
    if sentences is not None:
        return {"tokens": list(sentences[index].tokens)}
    item = dataset[index] if dataset is not None else None
    if isinstance(item, (tuple, list)):
        item = item[0]
    elif isinstance(item, dict):
        field_ = getattr(datamodule, "label_field", None)
        item = {k: v for k, v in item.items() if k != field_}
    return {"features": _to_plain(item)}


# -------------------------------------------------------------------------------------------- oracles
class Oracle:
    """Base class of the protocol: :meth:`query` and :meth:`collect` (see the module docstring).

    ``query`` takes :class:`Query` items; plain dataset indices are accepted too (with the ``datamodule``
    they come from, so a file oracle can render them).
    """

    def query(self, round: int, items: Sequence[Query | int], datamodule: Any = None) -> None:
        """Hand the items of ``round`` to the annotator."""
        raise NotImplementedError

    def collect(self, round: int) -> Answers | None:
        """Answers of ``round`` once complete, else ``None`` (pending)."""
        raise NotImplementedError

    def pending(self, round: int) -> list[Query] | None:
        """The items already handed out for ``round`` (found again after a restart), if any."""
        return None

    def pending_indices(self, round: int) -> list[int] | None:
        """Dataset indices of :meth:`pending`."""
        items = self.pending(round)
        return None if items is None else [q.index for q in items]


def as_queries(
    items: Sequence[Query | int],
    datamodule: Any = None,
    render: Callable[[Any, int], Any] | None = None,
    choices: Sequence[str] | None = None,
) -> list[Query]:
    """Queries from items that may be plain indices (rendered from ``datamodule``)."""
    tags = datamodule is not None and bool(getattr(datamodule, "tag_names", None))
    out = []
    for item in items:
        if isinstance(item, Query):
            out.append(item)
            continue
        index = int(item)
        example = (render or default_render)(datamodule, index) if datamodule is not None or render else None
        out.append(Query(index, "tags" if tags else "class", example, list(choices) if choices else None))
    return out


class FileOracle(Oracle):
    """A human in the loop through files: ``round_NNNN.queries.jsonl`` out, ``round_NNNN.answers.jsonl`` in.

    Answer with ``trinity label DIR/round_0001.queries.jsonl`` (rich terminal prompts, each answer saved at
    once) or any tool that appends answer lines (see the module docstring for the schema).

    Args:
        directory: where the query and answer files live.
        wait: block in :meth:`collect` until every answer is in (polling); with ``False``, ``collect``
            returns ``None`` at once and the campaign stops cleanly so it can resume later.
        poll_seconds: polling interval while waiting.
        timeout: give up waiting after this many seconds (``None``: wait forever); ``collect`` returns ``None``.
        choices: label names (class or tag names); default: the DataModule's ``tag_names``/``classes``.
        render: ``(datamodule, index) -> JSON-able example``; default shows tokens or features.

    Example:
        >>> import tempfile
        >>> oracle = FileOracle(tempfile.mkdtemp(), wait=False, choices=["neg", "pos"])
        >>> oracle.query(1, [4, 7])
        >>> oracle.pending_indices(1), oracle.collect(1)
        ([4, 7], None)
        >>> with open(oracle.answers_path(1), "w") as f:
        ...     _ = f.write('{"index": 4, "label": "pos"}\\nnot json\\n{"index": 7, "label": 0}\\n')
        >>> oracle.collect(1), oracle.problems
        (Answers(indices=[4, 7], labels=[1, 0]), ['...answers.jsonl:2: Expecting value'])
    """

    def __init__(
        self,
        directory: str,
        wait: bool = True,
        poll_seconds: float = 2.0,
        timeout: float | None = None,
        choices: Sequence[str] | None = None,
        render: Callable[[Any, int], Any] | None = None,
    ) -> None:
        if poll_seconds <= 0:
            raise ValueError(f"poll_seconds: expected a positive interval, got {poll_seconds}")
        self.directory = Path(directory)
        self.wait, self.poll_seconds, self.timeout = wait, poll_seconds, timeout
        self.choices = list(choices) if choices is not None else None
        self.render = render or default_render
        self.problems: list[str] = []

    def queries_path(self, round: int) -> Path:
        return self.directory / f"round_{round:04d}.queries.jsonl"

    def answers_path(self, round: int) -> Path:
        return self.directory / f"round_{round:04d}.answers.jsonl"

    def _choices(self, datamodule: Any) -> list[str] | None:
        if self.choices is None and datamodule is not None:
            found = getattr(datamodule, "tag_names", None) or getattr(datamodule, "classes", None)
            self.choices = list(found) if found else None
        return self.choices

    def query(self, round: int, items: Sequence[Query | int], datamodule: Any = None) -> None:
        """Write the round's query file atomically (kept as is when it exists: the annotator may be halfway)."""
        path = self.queries_path(round)
        choices = self._choices(datamodule)
        if path.exists():
            return
        queries = as_queries(items, datamodule, self.render if datamodule is not None else None, choices)
        for q in queries:
            if q.choices is None and choices is not None and q.kind != "yesno":
                q.choices = list(choices)
        text = "".join(json.dumps(q.to_json(round)) + "\n" for q in queries)
        atomic_write_text(path, text)

    def pending(self, round: int) -> list[Query] | None:
        path = self.queries_path(round)
        return read_query_file(path) if path.exists() else None

    def collect(self, round: int) -> Answers | None:
        queries = self.pending(round)
        if queries is None:
            raise KeyError(f"round: no query file {self.queries_path(round)}")
        for q in queries:  # files written without choices: the oracle's names apply
            if q.choices is None and self.choices is not None and q.kind != "yesno":
                q.choices = list(self.choices)
        started = time.monotonic()
        while True:
            answers, problems = read_answer_file(self.answers_path(round), queries)
            for problem in problems:
                if problem not in self.problems:
                    warnings.warn(f"answers file: {problem} (line skipped)", stacklevel=2)
            self.problems = problems
            if all(q.index in answers for q in queries):
                return Answers(
                    [q.index for q in queries],
                    [answers[q.index][0] for q in queries],
                    [answers[q.index][1] for q in queries],
                )
            if not self.wait or (self.timeout is not None and time.monotonic() - started > self.timeout):
                return None
            time.sleep(self.poll_seconds)
