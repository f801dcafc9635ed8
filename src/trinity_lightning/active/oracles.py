"""Oracles for active learning: who answers a query batch (the protocol lives in :mod:`trinity_lightning.rounds`).

:class:`SimulatedOracle` reveals the dataset's own (or held-back) labels at once; :class:`FileOracle`
hands the batch to a person through ``round_NNNN.queries.jsonl`` / ``round_NNNN.answers.jsonl`` (answer with
``trinity label``). Both follow the one oracle protocol of the round engine: ``query(round, items)`` and
``collect(round) -> Answers | None`` (``None`` while answers are pending; never an exception).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from trinity_lightning.rounds.oracle import (
    Answers,
    FileOracle,
    Oracle,
    Query,
    default_render,
    parse_label,
    read_answer_file,
)

__all__ = [
    "Answers",
    "FileOracle",
    "Oracle",
    "Query",
    "SimulatedOracle",
    "default_render",
    "parse_label",
    "read_answers",
]


class SimulatedOracle(Oracle):
    """Reveals held-back gold labels at once: the dataset's own labels, or ``gold[index]`` when given.

    Args:
        gold: optional gold label per dataset index (a sequence, or a callable ``index -> label``).

    Example:
        >>> oracle = SimulatedOracle()
        >>> oracle.query(1, [3, 5]); oracle.collect(1)
        Answers(indices=[3, 5], labels=None)
    """

    def __init__(self, gold: Sequence[Any] | Callable[[int], Any] | None = None) -> None:
        self.gold = gold
        self._batches: dict[int, list[int]] = {}

    def query(self, round: int, items: Sequence[Query | int], datamodule: Any = None) -> None:
        self._batches[round] = [int(q.index if isinstance(q, Query) else q) for q in items]

    def collect(self, round: int) -> Answers | None:
        if round not in self._batches:
            raise KeyError(f"round: no batch was queried for round {round}")
        indices = self._batches.pop(round)
        if self.gold is None:
            return Answers(indices)
        get = self.gold if callable(self.gold) else self.gold.__getitem__
        return Answers(indices, [get(i) for i in indices])


def read_answers(path: Path, choices: Sequence[str] | None = None) -> tuple[dict[int, Any], list[str]]:
    """Read an answers JSONL file as classes/tags among ``choices``: ``{index: label ids}`` and problems.

    Kept for scripts written against the first file oracle; :func:`~trinity_lightning.rounds.read_answer_file`
    validates against the round's queries (token counts, BIO, yes/no) and keeps the worker.
    """
    answers, problems = read_answer_file(Path(path), None, choices)
    return {index: label for index, (label, _) in answers.items()}, problems
