"""The labelling server's state: the current round's queries and every annotator's answers, on the files.

:class:`LabelStore` needs no web framework: it reads ``round_NNNN.queries.jsonl`` (the newest round of a
folder, or one file), keeps the answers of ``round_NNNN.answers.jsonl`` per ``(index, worker)`` (the last
answer of a worker wins; reading is incremental, so other tools may append too) and writes each new answer
with :func:`~trinity_lightning.rounds.oracle.append_answer` (one line, flushed and fsynced) after checking it
against its query. :func:`crowd_table` reads a round's answers as the crowd table ``task, worker, label``.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trinity_lightning.rounds.oracle import (
    Answers,
    FileOracle,
    Query,
    append_answer,
    read_query_file,
    validate_answer,
)

__all__ = [
    "ANONYMOUS",
    "CrowdFileOracle",
    "LabelStore",
    "RejectedAnswerError",
    "crowd_table",
    "name_anonymous",
    "read_worker_answers",
]

ANONYMOUS = "anonymous"
_ROUND_FILE = re.compile(r"^round_(\d{4,})\.queries\.jsonl$")
_WORKER = re.compile(r"^[\w .@+-]{1,64}$")


class RejectedAnswerError(ValueError):
    """An answer the store refuses; ``status`` is the HTTP status the server answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def check_worker(worker: Any) -> str:
    """A worker name: 1-64 letters, digits, spaces or ``. @ + - _`` (raises :class:`RejectedAnswerError`)."""
    if not isinstance(worker, str) or not _WORKER.match(worker.strip()):
        raise RejectedAnswerError(
            f"worker: expected a name of 1-64 letters, digits, spaces or . @ + - _, got {worker!r}"
        )
    return worker.strip()


def as_written(value: Any, query: Query) -> Any:
    """A validated answer as the file stores it: a class name, tag names, or ``"yes"``/``"no"``."""
    if query.kind == "yesno":
        return "yes" if value else "no"
    if query.choices is None:
        return value
    if query.kind == "tags":
        return [query.choices[i] for i in value]
    return query.choices[value]


def read_worker_answers(
    path: Path, queries: Sequence[Query], start: int = 0
) -> tuple[list[tuple[int, str, Any]], list[str], int]:
    """Valid answer lines of ``path`` from byte ``start``: ``[(index, worker, written label)]``, problems, end.

    Only whole lines are read (a line still being written is left for the next call); ``end`` is the byte
    offset to continue from. Lines are validated like :func:`~trinity_lightning.rounds.oracle.read_answer_file`
    (a problem reads ``file:line: reason``). A worker name loses surrounding spaces; a line without one (or with
    an empty one) is :data:`ANONYMOUS` (:func:`name_anonymous` tells such answers apart).
    """
    by_index = {q.index: q for q in queries}
    rows: list[tuple[int, str, Any]] = []
    problems: list[str] = []
    if not path.exists():
        return rows, problems, 0
    with path.open("rb") as handle:
        handle.seek(start)
        data = handle.read()
    cut = data.rfind(b"\n") + 1
    first_line: int | None = None  # line number of byte `start`, counted only when a line has a problem
    for number, text in enumerate(data[:cut].decode("utf-8", errors="replace").split("\n")[:-1]):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
            if not isinstance(record, dict) or "index" not in record or "label" not in record:
                raise ValueError('expected an object with "index" and "label"')
            query = by_index.get(record["index"]) if isinstance(record["index"], int) else None
            if query is None:
                raise ValueError(f"index {record['index']!r} was not asked in this round")
            worker = record.get("worker")
            if worker is not None and not isinstance(worker, str):
                raise ValueError(f'"worker" must be a string, got {worker!r}')
            worker = (worker or "").strip() or ANONYMOUS
            rows.append((query.index, worker, as_written(validate_answer(record["label"], query), query)))
        except ValueError as err:  # json.JSONDecodeError is a ValueError
            if first_line is None:
                with path.open("rb") as handle:
                    first_line = 1 + handle.read(start).count(b"\n")
            problems.append(f"{path}:{first_line + number}: {err}")
    return rows, problems, start + cut


def name_anonymous(
    rows: Sequence[tuple[int, str, Any]], seen: Counter[int] | None = None
) -> list[tuple[int, str, Any]]:
    """The answers with every :data:`ANONYMOUS` one named ``anonymous-1``, ``anonymous-2``, ...: the j-th answer
    without a worker to an item, in file order.

    The names are stable (an answers file is append-only, so every read gives the same ones), and an answer
    without a worker never replaces another (nobody can tell a correction from a new person). Aggregators see the
    j-th anonymous answers of all items as one pseudo-worker: they cannot tell the people apart, so write a
    ``worker`` with every answer to get per-person confusions. ``seen`` (updated in place) continues the numbering
    of an earlier read of the same file (the labelling server reads it incrementally).

    Example:
        >>> name_anonymous([(3, "anonymous", "cat"), (3, "ann", "dog"), (3, "anonymous", "dog"), (4, "anonymous", 0)])
        [(3, 'anonymous-1', 'cat'), (3, 'ann', 'dog'), (3, 'anonymous-2', 'dog'), (4, 'anonymous-1', 0)]
    """
    seen = Counter() if seen is None else seen
    named = []
    for index, worker, label in rows:
        if worker == ANONYMOUS:
            seen[index] += 1
            worker = f"{ANONYMOUS}-{seen[index]}"
        named.append((index, worker, label))
    return named


def _last_answers(rows: Sequence[tuple[int, str, Any]]) -> dict[tuple[int, str], Any]:
    """``{(index, worker): label}``, the last answer of each worker to each item, in the order of those answers."""
    last: dict[tuple[int, str], Any] = {}
    for index, worker, label in name_anonymous(rows):
        last.pop((index, worker), None)  # keep the order of the last answer
        last[(index, worker)] = label
    return last


def crowd_table(queries_path: str | Path, answers_path: str | Path | None = None) -> Any:
    """A round's answers as a crowd table (pandas): ``task, worker, label``, one row per item and worker.

    The last answer of each worker to each item wins; answers without a worker are ``anonymous-1``,
    ``anonymous-2``, ... (:func:`name_anonymous`); invalid lines are skipped. The table goes straight into
    :class:`~trinity_lightning.crowd.DawidSkene` or :class:`~trinity_lightning.crowd.MajorityVote` (class and
    yes/no rounds; a tag round's label is its tag list joined by spaces).

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "round_0001.queries.jsonl").write_text('{"index": 3, "choices": ["cat", "dog"]}\\n')
        >>> _ = (d / "round_0001.answers.jsonl").write_text(
        ...     '{"index": 3, "label": "dog", "worker": "ann"}\\n{"index": 3, "label": 0, "worker": "bo"}\\n')
        >>> crowd_table(d / "round_0001.queries.jsonl").values.tolist()
        [[3, 'ann', 'dog'], [3, 'bo', 'cat']]
    """
    import pandas as pd

    queries_path = Path(queries_path)
    queries = read_query_file(queries_path)
    answers = Path(answers_path) if answers_path else _answers_path(queries_path)
    rows, _, _ = read_worker_answers(answers, queries)
    return pd.DataFrame(
        [
            (index, worker, " ".join(label) if isinstance(label, list) else label)
            for (index, worker), label in _last_answers(rows).items()
        ],
        columns=["task", "worker", "label"],
    )


def _answers_path(queries_path: Path) -> Path:
    name = queries_path.name.replace(".queries.jsonl", ".answers.jsonl")
    return queries_path.with_name(name if name != queries_path.name else queries_path.stem + ".answers.jsonl")


@dataclass
class _Round:
    number: int
    queries_path: Path
    answers_path: Path
    queries: list[Query]
    by_index: dict[int, Query]
    answers: dict[int, dict[str, Any]]  # index -> {worker: label}, in answer order
    order: dict[str, list[int]]  # worker -> indices in the order of their last answer
    offset: int = 0
    size: int = -1
    unnamed: Counter[int] = field(default_factory=Counter)  # index -> answers without a worker so far


class LabelStore:
    """The queries and answers a labelling page serves, read from and written to the oracle's files.

    Args:
        source: a folder of ``round_NNNN.queries.jsonl`` files (the newest round is served, and a new round is
            picked up when its file appears) or one queries file.
        answers_per_item: how many different people answer each item (``k``); an answer from one more person
            is refused (HTTP 409), a person may always change their own answer.
        choices: label names for queries written without them.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "round_0001.queries.jsonl").write_text('{"index": 3, "choices": ["cat", "dog"]}\\n')
        >>> store = LabelStore(d)
        >>> store.answer(1, 3, "dog", "ann")["label"]
        'dog'
        >>> (d / "round_0001.answers.jsonl").read_text()
        '{"index": 3, "label": "dog", "worker": "ann"}\\n'
    """

    def __init__(self, source: str | Path, answers_per_item: int = 1, choices: Sequence[str] | None = None) -> None:
        if answers_per_item < 1:
            raise ValueError(f"answers_per_item: expected at least 1, got {answers_per_item}")
        self.source = Path(source)
        if not self.source.exists():
            raise FileNotFoundError(f"no such queries folder or file: {self.source}")
        self.k = answers_per_item
        self.choices = list(choices) if choices is not None else None
        self.problems: list[str] = []
        self._lock = threading.RLock()
        self._round: _Round | None = None

    # ------------------------------------------------------------------------------------------ rounds
    @property
    def directory(self) -> Path:
        """The folder of the queries files."""
        return self.source if self.source.is_dir() else self.source.parent

    def newest_queries(self) -> Path | None:
        """The queries file served now: the newest round of the folder (or the one file given)."""
        if self.source.is_file():
            return self.source
        found = [(int(m.group(1)), p) for p in self.source.iterdir() if (m := _ROUND_FILE.match(p.name))]
        return max(found)[1] if found else None

    def current(self) -> _Round | None:
        """The current round, reloaded when a newer queries file appeared and refreshed with new answer lines."""
        with self._lock:
            path = self.newest_queries()
            if path is None:
                return None
            if self._round is None or self._round.queries_path != path:
                queries = read_query_file(path)
                for q in queries:
                    if q.choices is None and self.choices is not None and q.kind != "yesno":
                        q.choices = list(self.choices)
                match = _ROUND_FILE.match(path.name)
                number = int(match.group(1)) if match else _file_round(path)
                self._round = _Round(number, path, _answers_path(path), queries, {q.index: q for q in queries}, {}, {})
            self._refresh(self._round)
            return self._round

    def _refresh(self, rnd: _Round) -> None:
        try:
            size = rnd.answers_path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size == rnd.size:
            return
        if size < rnd.offset:  # replaced or truncated by someone: read it again
            rnd.answers, rnd.order, rnd.offset, rnd.unnamed = {}, {}, 0, Counter()
        rows, problems, rnd.offset = read_worker_answers(rnd.answers_path, rnd.queries, rnd.offset)
        self.problems.extend(problems)
        for index, worker, label in name_anonymous(rows, rnd.unnamed):  # k counts worker-less answers one by one
            self._remember(rnd, index, worker, label)
        rnd.size = size

    @staticmethod
    def _remember(rnd: _Round, index: int, worker: str, label: Any) -> None:
        by_worker = rnd.answers.setdefault(index, {})
        by_worker.pop(worker, None)
        by_worker[worker] = label
        order = rnd.order.setdefault(worker, [])
        if index in order:
            order.remove(index)
        order.append(index)

    # ------------------------------------------------------------------------------------------ answers
    def answer(self, round: Any, index: Any, label: Any, worker: Any) -> dict[str, Any]:
        """Validate and append one answer (atomically, fsynced); returns the line written.

        Raises:
            RejectedAnswerError: a stale round (409), an index not queried in this round (404), an invalid label
                (400), an item that already has its ``k`` answers from other people (409), or a relabel query
                answered by a worker in its ``answered_by`` (409: they labelled the item in an earlier round).
        """
        worker = check_worker(worker)
        with self._lock:
            rnd = self.current()
            if rnd is None:
                raise RejectedAnswerError("no queries to answer yet", 409)
            if round != rnd.number:
                raise RejectedAnswerError(f"round {round!r} is not the current round ({rnd.number})", 409)
            query = rnd.by_index.get(index) if isinstance(index, int) and not isinstance(index, bool) else None
            if query is None:
                raise RejectedAnswerError(f"index {index!r} was not queried in round {rnd.number}", 404)
            try:
                written = as_written(validate_answer(label, query), query)
            except ValueError as err:
                raise RejectedAnswerError(f"index {index}: {err}") from None
            if query.relabel and worker in (query.answered_by or []):
                raise RejectedAnswerError(
                    f"index {index} is a relabel: {worker!r} labelled it in an earlier round (someone else answers)",
                    409,
                )
            others = [w for w in rnd.answers.get(index, {}) if w != worker]
            if len(others) >= self.k:
                raise RejectedAnswerError(
                    f"index {index} already has {len(others)} answer(s) from other people (k={self.k})", 409
                )
            record: dict[str, Any] = {"index": index, "label": written}
            if query.question_id is not None:
                record["question_id"] = query.question_id
            record["worker"] = worker
            append_answer(rnd.answers_path, record)
            self._remember(rnd, index, worker, written)
            rnd.offset = rnd.size = rnd.answers_path.stat().st_size
            return record

    def progress(self, index: int) -> dict[str, int]:
        """How many people answered ``index`` and how many items have their ``k`` answers."""
        with self._lock:
            rnd = self._round
            if rnd is None:
                return {"count": 0, "complete": 0}
            complete = sum(1 for by in rnd.answers.values() if len(by) >= self.k)
            return {"count": len(rnd.answers.get(index, {})), "complete": complete}

    def state(self, worker: str | None = None) -> dict[str, Any]:
        """The progress the page shows: round, sizes, answer counts per item and the worker's own answers."""
        with self._lock:
            rnd = self.current()
            if rnd is None:
                return {"round": None, "total": 0, "k": self.k}
            counts = {str(i): len(by) for i, by in rnd.answers.items()}
            mine = []
            if worker:
                mine = [[i, rnd.answers[i][worker]] for i in rnd.order.get(worker, [])]
            return {
                "round": rnd.number,
                "file": rnd.queries_path.name,
                "total": len(rnd.queries),
                "k": self.k,
                "complete": sum(1 for by in rnd.answers.values() if len(by) >= self.k),
                "counts": counts,
                "mine": mine,
            }

    def queries(self) -> dict[str, Any]:
        """The current round's queries as JSON (what the page renders)."""
        with self._lock:
            rnd = self.current()
            if rnd is None:
                return {"round": None, "queries": []}
            return {"round": rnd.number, "queries": [q.to_json(rnd.number) for q in rnd.queries]}

    def example_file(self, round: int, index: int, key: str = "image") -> Path | None:
        """The image file of a current-round example (``example[key]``, relative to the queries folder).

        Only a path named by a query of the current round is ever served, and only an image file.
        """
        with self._lock:
            rnd = self.current()
            if rnd is None or round != rnd.number or index not in rnd.by_index:
                return None
            example = rnd.by_index[index].example
            value = example.get(key) if isinstance(example, dict) else None
            if not isinstance(value, str) or value.startswith(("data:", "http:", "https:")):
                return None
            path = Path(value) if Path(value).is_absolute() else rnd.queries_path.parent / value
            if path.suffix.lower() not in _IMAGE_TYPES or not path.is_file():
                return None
            return path


_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
                ".webp": "image/webp", ".bmp": "image/bmp"}  # fmt: skip


def _file_round(path: Path) -> int:
    """The round number written in a queries file not named ``round_NNNN`` (0 when it has none)."""
    with path.open(encoding="utf-8") as handle:
        first = handle.readline()
    try:
        value = json.loads(first).get("round")
    except (ValueError, AttributeError):
        return 0
    return value if isinstance(value, int) else 0


class CrowdFileOracle(FileOracle):
    """A :class:`~trinity_lightning.rounds.FileOracle` whose round is complete once ``k`` different people
    answered every item; the answers are aggregated (majority vote, or any crowd aggregator over the round's
    workers: Dawid-Skene, GLAD, MACE, ...).

    Use it with ``trinity label --web DIR --answers-per-item k`` (or any tool that appends answer lines). Every
    answer keeps its worker: the file's ``worker`` field (surrounding spaces dropped; the last answer of a worker
    to an item wins), and for an answer without one a stable generated id, ``anonymous-j`` for the j-th such
    answer to the item (:func:`name_anonymous`), so ``k`` worker-less answers also complete an item. The
    aggregators that model workers (``"dawid_skene"``, ``"glad"``, ``"mace"``, ...) are fitted on that table
    (:meth:`annotations`); the fitted one is kept in ``aggregator_``. Class and yes/no items are aggregated by the
    chosen aggregator, one fit per set of choices (each declared in full, so a class nobody chose is still a
    class); a tag sequence by majority over whole sequences (ties: the first given). Invalid answer lines are
    skipped and listed in ``problems`` (``file:line: reason``). With ``k > 1`` the :class:`Answers` also carry
    ``annotations``, every person's answer to each item (``None`` for a worker-less one), so a campaign such as
    :class:`~trinity_lightning.active.ActiveRelabelling` keeps each of them, not just their aggregate.

    Args:
        directory: the folder of the round files.
        answers_per_item: ``k``.
        aggregator: ``"majority"`` (per item; ties: the first given), the name of an aggregator that needs only
            the annotations (:data:`~trinity_lightning.crowd.registry.ANNOTATION_ONLY`: ``"dawid_skene"``,
            ``"glad"``, ``"mace"``, ``"wawa"``, ...) or an :class:`~trinity_lightning.crowd.base.Aggregator`.
        **options: ``wait``, ``poll_seconds``, ``timeout``, ``choices``, ``render`` as for ``FileOracle``.

    Attributes:
        aggregator_: the aggregator fitted on the last complete round's class/yes-no answers (``None`` for
            ``"majority"``, or when the round had none); with several sets of choices, the last one's.

    Example:
        >>> import tempfile
        >>> oracle = CrowdFileOracle(tempfile.mkdtemp(), answers_per_item=2, wait=False, choices=["cat", "dog"])
        >>> oracle.query(1, [4])
        >>> store = LabelStore(oracle.directory, answers_per_item=2)
        >>> _ = store.answer(1, 4, "dog", "ann"); oracle.collect(1) is None
        True
        >>> _ = store.answer(1, 4, "dog", "bo"); oracle.collect(1)
        Answers(indices=[4], labels=[1])
        >>> oracle.annotations(1).values.tolist()
        [[4, 'ann', 'dog'], [4, 'bo', 'dog']]
    """

    aggregator_: Any = None

    def __init__(
        self, directory: str, answers_per_item: int = 2, aggregator: str | Any = "majority", **options: Any
    ) -> None:
        super().__init__(directory, **options)
        if answers_per_item < 1:
            raise ValueError(f"answers_per_item: expected at least 1, got {answers_per_item}")
        if isinstance(aggregator, str) and aggregator != "majority":
            from trinity_lightning.crowd.registry import ANNOTATION_ONLY

            if aggregator not in ANNOTATION_ONLY:
                raise ValueError(
                    f"aggregator: expected 'majority' or one of {list(ANNOTATION_ONLY)} (aggregators that need only "
                    f"the annotations) or an Aggregator, got {aggregator!r}"
                )
        elif not isinstance(aggregator, str) and not callable(getattr(aggregator, "fit", None)):
            raise ValueError(f"aggregator: expected a name or an Aggregator (with fit), got {aggregator!r}")
        self.k, self.aggregator = answers_per_item, aggregator

    def collect(self, round: int) -> Answers | None:
        started = time.monotonic()
        while True:
            result = self._complete(round)
            if result is not None or not self.wait:
                return result
            if self.timeout is not None and time.monotonic() - started > self.timeout:
                return None
            time.sleep(self.poll_seconds)

    def _votes(self, round: int) -> tuple[list[Query], dict[int, dict[str, Any]]]:
        """The round's queries and ``{index: {worker: label}}`` (named as :meth:`annotations` says)."""
        queries = self.pending(round)
        if queries is None:
            raise KeyError(f"round: no query file {self.queries_path(round)}")
        for q in queries:
            if q.choices is None and self.choices is not None and q.kind != "yesno":
                q.choices = list(self.choices)
        rows, self.problems, _ = read_worker_answers(self.answers_path(round), queries)
        votes: dict[int, dict[str, Any]] = {}
        for (index, worker), label in _last_answers(rows).items():
            votes.setdefault(index, {})[worker] = label
        return queries, votes

    def annotations(self, round: int) -> Any:
        """Every valid answer of ``round`` so far as a crowd table (pandas): ``task, worker, label``, one row per
        item and worker (the last answer of a worker wins; ``anonymous-j``: the j-th answer without a worker to
        the item). Feed it to any aggregator, e.g. ``GLAD().fit(oracle.annotations(1))``."""
        import pandas as pd

        _, votes = self._votes(round)
        rows = [(i, w, " ".join(v) if isinstance(v, list) else v) for i, by in votes.items() for w, v in by.items()]
        return pd.DataFrame(rows, columns=["task", "worker", "label"])

    def _complete(self, round: int) -> Answers | None:
        queries, votes = self._votes(round)
        if any(len(votes.get(q.index, {})) < self.k for q in queries):
            return None
        chosen = self._aggregate(queries, votes)
        labels = [validate_answer(chosen[q.index], q) for q in queries]
        # the answer of one named person carries their name (ActiveRelabelling keeps it); an aggregate has none
        workers = [next(iter(votes[q.index])) if len(votes[q.index]) == 1 else None for q in queries]
        everyone = [
            [(None if _unnamed(w) else w, validate_answer(v, q)) for w, v in votes[q.index].items()] for q in queries
        ]
        return Answers(
            [q.index for q in queries],
            labels,
            [None if w is None or _unnamed(w) else w for w in workers],
            everyone if self.k > 1 else None,
        )

    def _aggregate(self, queries: Sequence[Query], votes: dict[int, dict[str, Any]]) -> dict[int, Any]:
        chosen = {}
        for q in queries:
            counted = Counter(json.dumps(v) for v in votes[q.index].values())
            chosen[q.index] = json.loads(counted.most_common(1)[0][0])
        self.aggregator_ = None
        if self.aggregator == "majority":
            return chosen
        groups: dict[tuple[str, ...] | None, list[Query]] = {}  # one fit per set of choices
        for q in queries:
            if q.kind != "tags":
                groups.setdefault(tuple(q.choices) if q.choices else None, []).append(q)
        for choices, flat in groups.items():
            import pandas as pd

            frame = pd.DataFrame(
                [(q.index, w, v) for q in flat for w, v in votes[q.index].items()], columns=["task", "worker", "label"]
            )
            model = self._new_aggregator()
            model.fit(frame, **({"classes": list(choices)} if choices else {}))
            result = model.to_frame(probabilities=False)
            chosen.update(dict(zip(result["item"].tolist(), result["label"].tolist(), strict=True)))
            self.aggregator_ = model
        return chosen

    def _new_aggregator(self) -> Any:
        if not isinstance(self.aggregator, str):
            return copy.deepcopy(self.aggregator)  # a fresh copy per fit: the given one stays unfitted
        from trinity_lightning.crowd.registry import get_aggregator

        return get_aggregator(self.aggregator, "aggregator")


def _unnamed(worker: str) -> bool:
    """An answer without a worker (``anonymous``, or ``anonymous-j`` from :func:`name_anonymous`)."""
    return re.fullmatch(rf"{ANONYMOUS}(-\d+)?", worker) is not None
