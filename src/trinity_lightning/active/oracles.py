"""Oracles: who answers a query batch. A simulated one for experiments, a file-based one for humans.

An oracle gets ``query(round, indices, datamodule)`` and later ``collect(round)``, which returns
:class:`Answers` once every queried example has a label (``None`` while some are missing).
:class:`FileOracle` writes the batch as JSONL, reads the answers back (from ``trinity label`` or any
tool that appends ``{"index": ..., "label": ...}`` lines) and survives a restart: the batch already sent
for a round is found again with :meth:`FileOracle.pending_indices`.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trinity_lightning.data.atomic import atomic_write_text

__all__ = ["Answers", "FileOracle", "Oracle", "SimulatedOracle", "parse_label", "read_answers"]


@dataclass
class Answers:
    """Labels for a query batch; ``labels`` is ``None`` when the dataset's own (held-back) labels apply."""

    indices: list[int]
    labels: list[Any] | None = None


class Oracle:
    """Base class. Subclasses implement :meth:`query` and :meth:`collect`."""

    def query(self, round: int, indices: Sequence[int], datamodule: Any) -> None:
        """Hand the batch of ``round`` to the annotator."""
        raise NotImplementedError

    def collect(self, round: int) -> Answers | None:
        """Answers of ``round`` once complete, else ``None``."""
        raise NotImplementedError

    def pending_indices(self, round: int) -> list[int] | None:
        """The batch already handed out for ``round`` (after a restart), if any."""
        return None


class SimulatedOracle(Oracle):
    """Reveals held-back gold labels at once: the dataset's own labels, or ``gold[index]`` when given.

    Args:
        gold: optional gold label per dataset index (a sequence, or a callable ``index -> label``).

    Example:
        >>> oracle = SimulatedOracle()
        >>> oracle.query(1, [3, 5], datamodule=None); oracle.collect(1)
        Answers(indices=[3, 5], labels=None)
    """

    def __init__(self, gold: Sequence[Any] | Callable[[int], Any] | None = None) -> None:
        self.gold = gold
        self._batches: dict[int, list[int]] = {}

    def query(self, round: int, indices: Sequence[int], datamodule: Any) -> None:
        self._batches[round] = [int(i) for i in indices]

    def collect(self, round: int) -> Answers | None:
        if round not in self._batches:
            raise KeyError(f"round: no batch was queried for round {round}")
        indices = self._batches.pop(round)
        if self.gold is None:
            return Answers(indices)
        get = self.gold if callable(self.gold) else self.gold.__getitem__
        return Answers(indices, [get(i) for i in indices])


def _to_plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
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


def parse_label(raw: Any, choices: Sequence[str] | None) -> int | list[int]:
    """An answer as ids: an int, a choice name, or a list of either (token tags).

    Example:
        >>> parse_label(["B-PER", "O"], ["O", "B-PER"]), parse_label("cat", ["dog", "cat"]), parse_label(2, None)
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


def read_answers(path: Path, choices: Sequence[str] | None = None) -> tuple[dict[int, Any], list[str]]:
    """Read an answers JSONL file: ``{index: label ids}`` (the last answer of an index wins) and problems.

    A malformed line is reported as ``"<file>:<line>: <reason>"`` and skipped; the other lines are kept.
    """
    answers: dict[int, Any] = {}
    problems: list[str] = []
    if not path.exists():
        return answers, problems
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
                answers[index] = parse_label(record["label"], choices)
            except (json.JSONDecodeError, ValueError) as err:
                reason = err.msg if isinstance(err, json.JSONDecodeError) else str(err)
                problems.append(f"{path}:{number}: {reason}")
    return answers, problems


class FileOracle(Oracle):
    """A human in the loop through files: ``round_NNNN.queries.jsonl`` out, ``round_NNNN.answers.jsonl`` in.

    Each query line is ``{"index", "round", "example", "choices", "kind"}``; each answer line is
    ``{"index": 12, "label": "B-PER ..." | ["B-PER", "O"] | 3 | "cat"}``. Answer with ``trinity label
    DIR/round_0001.queries.jsonl`` (rich terminal prompts, each answer saved at once) or any tool.

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
        >>> oracle.query(1, [4, 7], datamodule=None)
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

    def query(self, round: int, indices: Sequence[int], datamodule: Any) -> None:
        path = self.queries_path(round)
        choices = self._choices(datamodule)  # also after a restart: collect() reads label names with them
        if path.exists():  # already sent before a restart: the annotator may be halfway through it
            return
        kind = "tags" if datamodule is not None and getattr(datamodule, "tag_names", None) else "class"
        lines = []
        for index in indices:
            example = self.render(datamodule, int(index)) if datamodule is not None else None
            lines.append(
                json.dumps({"index": int(index), "round": round, "example": example, "choices": choices, "kind": kind})
            )
        atomic_write_text(path, "\n".join(lines) + "\n")

    def pending_indices(self, round: int) -> list[int] | None:
        path = self.queries_path(round)
        if not path.exists():
            return None
        indices = []
        for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if text.strip():
                try:
                    indices.append(int(json.loads(text)["index"]))
                except (ValueError, KeyError, TypeError):
                    raise ValueError(f"{path}:{number}: not a query line written by FileOracle") from None
        return indices

    def _file_choices(self, round: int) -> list[str] | None:
        """The label names written in the query file of ``round`` (its first line), if any."""
        for text in self.queries_path(round).read_text(encoding="utf-8").splitlines():
            if text.strip():
                try:
                    found = json.loads(text).get("choices")
                except (ValueError, AttributeError):
                    return None
                return list(found) if isinstance(found, list) else None
        return None

    def collect(self, round: int) -> Answers | None:
        indices = self.pending_indices(round)
        if indices is None:
            raise KeyError(f"round: no query file {self.queries_path(round)}")
        # after a restart nothing may have set the label names yet: the query file carries them
        choices = self.choices if self.choices is not None else self._file_choices(round)
        started = time.monotonic()
        while True:
            answers, problems = read_answers(self.answers_path(round), choices)
            for problem in problems:
                if problem not in self.problems:
                    warnings.warn(f"answers file: {problem} (line skipped)", stacklevel=2)
            self.problems = problems
            if all(i in answers for i in indices):
                return Answers(indices, [answers[i] for i in indices])
            if not self.wait or (self.timeout is not None and time.monotonic() - started > self.timeout):
                return None
            time.sleep(self.poll_seconds)
