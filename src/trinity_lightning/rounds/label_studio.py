"""Label Studio as an oracle: a round's queries as Label Studio tasks, its annotations back as answer lines.

Without a server (file formats only, no extra package):

* :func:`labeling_config` the XML labelling config for a round (``Choices`` for classes and yes/no, ``Labels``
  on word-granular ``Text`` for entity spans);
* :func:`to_tasks` a round's queries as Label Studio's JSON task list (``data.text`` / ``data.image`` /
  ``data.question``, plus ``data.trinity_index`` and ``data.trinity_round``), :func:`write_tasks` to a file
  for *Import* in Label Studio;
* :func:`answers_from_export` reads a Label Studio JSON export (completed annotations, cancelled ones
  skipped) into answer lines ``{"index", "label", "worker"}`` (character spans snap to the tokens, BIO tags
  made here), :func:`import_export` appends them to the round's answers file, where
  :class:`~trinity_lightning.rounds.FileOracle` (and the campaign) reads them.

With a server: :class:`LabelStudioOracle` pushes each round's tasks through ``label-studio-sdk`` and collects
completed annotations (with the annotator's id as ``worker``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from trinity_lightning.rounds.oracle import Answers, Oracle, Query, append_answer, as_queries, validate_answer

__all__ = [
    "LabelStudioOracle",
    "answers_from_export",
    "import_export",
    "labeling_config",
    "to_tasks",
    "write_tasks",
]

_BIO = ("B-", "I-")


def _types(choices: Sequence[str]) -> tuple[list[str], bool]:
    bio = bool(choices) and all(c == "O" or c[:2] in _BIO for c in choices)
    if bio:
        return list(dict.fromkeys(c[2:] for c in choices if c != "O")), True
    return [c for c in choices if c != "O"], False


def labeling_config(query: Query) -> str:
    """Label Studio's XML config for a round of ``query``'s kind (every round has one kind).

    Example:
        >>> print(labeling_config(Query(0, "class", {"text": "hi"}, ["cat", "dog"])))
        <View>
          <Text name="text" value="$text"/>
          <Choices name="label" toName="text" choice="single" showInLine="true">
            <Choice value="cat"/>
            <Choice value="dog"/>
          </Choices>
        </View>
    """
    example = query.example if isinstance(query.example, dict) else {}
    image = isinstance(example.get("image"), str)
    target = "image" if image and query.kind != "tags" else "text"
    lines = ["<View>"]
    if query.kind == "yesno":
        lines.append('  <Header value="$question"/>')
    if query.kind == "tags":
        types, _ = _types(query.choices or [])
        lines.append('  <Labels name="label" toName="text">')
        lines += [f"    <Label value={quoteattr(t)}/>" for t in types]
        lines.append("  </Labels>")
        lines.append('  <Text name="text" value="$text" granularity="word"/>')
    else:
        lines.append('  <Image name="image" value="$image"/>' if image else '  <Text name="text" value="$text"/>')
        choices = ["yes", "no"] if query.kind == "yesno" else list(query.choices or [])
        lines.append(f'  <Choices name="label" toName="{target}" choice="single" showInLine="true">')
        lines += [f"    <Choice value={quoteattr(c)}/>" for c in choices]
        lines.append("  </Choices>")
    lines.append("</View>")
    return "\n".join(lines)


def _text(example: Any) -> str:
    if isinstance(example, dict):
        if isinstance(example.get("tokens"), list):
            return " ".join(str(t) for t in example["tokens"])
        if isinstance(example.get("text"), str):
            return example["text"]
        return json.dumps(example.get("features", example))
    return "" if example is None else str(example)


def to_tasks(queries: Iterable[Query], round: int) -> list[dict[str, Any]]:
    """Label Studio tasks (``[{"data": {...}}]``) for a round's queries.

    Example:
        >>> to_tasks([Query(4, "tags", {"tokens": ["EU", "rejects"]}, ["O", "B-ORG"])], round=1)
        [{'data': {'text': 'EU rejects', 'trinity_index': 4, 'trinity_round': 1, 'tokens': ['EU', 'rejects']}}]
    """
    tasks = []
    for q in queries:
        data: dict[str, Any] = {"text": _text(q.example), "trinity_index": q.index, "trinity_round": round}
        if q.tokens is not None:
            data["tokens"] = list(q.tokens)
        if isinstance(q.example, dict) and isinstance(q.example.get("image"), str):
            data["image"] = q.example["image"]
        if q.kind == "yesno":
            data["question"] = q.question or ""
        tasks.append({"data": data})
    return tasks


def write_tasks(queries_path: str | Path, out: str | Path | None = None) -> Path:
    """Write ``round_NNNN.labelstudio.json`` (tasks) and ``round_NNNN.labelstudio.xml`` (config) beside a
    queries file; returns the tasks file (import it into a Label Studio project with that config)."""
    from trinity_lightning.rounds.oracle import read_query_file

    queries_path = Path(queries_path)
    queries = read_query_file(queries_path)
    if not queries:
        raise ValueError(f"{queries_path}: no queries")
    round = _round_of(queries_path)
    stem = queries_path.name.replace(".queries.jsonl", "")
    target = Path(out) if out else queries_path.with_name(f"{stem}.labelstudio.json")
    target.write_text(json.dumps(to_tasks(queries, round), indent=1), encoding="utf-8")
    target.with_suffix(".xml").write_text(labeling_config(queries[0]) + "\n", encoding="utf-8")
    return target


def _round_of(path: Path) -> int:
    digits = path.name.split("_", 1)[1].split(".", 1)[0] if path.name.startswith("round_") else ""
    return int(digits) if digits.isdigit() else 0


def _token_tags(query: Query, text: str, spans: list[tuple[int, int, str]]) -> list[str]:
    """BIO (or plain) tags of the query's tokens from character spans of ``text``; spans snap to whole tokens."""
    tokens = [str(t) for t in (query.tokens or [])]
    _, bio = _types(query.choices or [])
    starts, position = [], 0
    for token in tokens:
        found = text.find(token, position)
        position = (found if found >= 0 else position) + len(token)
        starts.append(found if found >= 0 else position - len(token))
    tags = ["O"] * len(tokens)
    for start, end, kind in sorted(spans):
        inside = [i for i, s in enumerate(starts) if s < end and s + len(tokens[i]) > start]
        if not inside or any(tags[i] != "O" for i in inside):
            continue  # an overlapping span: the first one wins
        for n, i in enumerate(inside):
            tags[i] = (("B-" if n == 0 else "I-") + kind) if bio else kind
    return tags


def _worker(annotation: dict[str, Any]) -> str | None:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("username") or who.get("id")
    return None if who is None else str(who)


def answers_from_export(export: Any, queries: Sequence[Query]) -> tuple[list[dict[str, Any]], list[str]]:
    """Answer lines from a Label Studio JSON export (a path, JSON text or the parsed list) and the problems.

    Each completed, not cancelled annotation of a queried task becomes ``{"index", "label", "worker"}``
    (``question_id`` too for yes/no), validated against its query; tasks of other rounds or items are reported.

    Example:
        >>> q = Query(4, "tags", {"tokens": ["Anna", "Smith", "left"]}, ["O", "B-PER", "I-PER"])
        >>> export = [{"data": {"trinity_index": 4, "text": "Anna Smith left"}, "annotations": [{"completed_by": 7,
        ...     "result": [{"type": "labels", "value": {"start": 0, "end": 10, "labels": ["PER"]}}]}]}]
        >>> answers_from_export(export, [q])
        ([{'index': 4, 'label': ['B-PER', 'I-PER', 'O'], 'worker': '7'}], [])
    """
    if isinstance(export, (str, Path)) and not str(export).lstrip().startswith("["):
        export = json.loads(Path(export).read_text(encoding="utf-8"))
    elif isinstance(export, str):
        export = json.loads(export)
    if not isinstance(export, list):
        raise ValueError("a Label Studio JSON export is a list of tasks")
    by_index = {q.index: q for q in queries}
    lines: list[dict[str, Any]] = []
    problems: list[str] = []
    for n, task in enumerate(export):
        data = task.get("data", {}) if isinstance(task, dict) else {}
        index = data.get("trinity_index")
        query = by_index.get(index) if isinstance(index, int) else None
        if query is None:
            problems.append(f"task {n} (id {task.get('id') if isinstance(task, dict) else None}): not queried")
            continue
        for annotation in task.get("annotations") or []:
            if annotation.get("was_cancelled"):
                continue
            results = annotation.get("result") or []
            try:
                if query.kind == "tags":
                    spans = [
                        (int(r["value"]["start"]), int(r["value"]["end"]), str(r["value"]["labels"][0]))
                        for r in results
                        if r.get("type") == "labels"
                    ]
                    label: Any = _token_tags(query, str(data.get("text", "")), spans)
                else:
                    picked = [c for r in results if r.get("type") == "choices" for c in r["value"]["choices"]]
                    if len(picked) != 1:
                        raise ValueError(f"expected one choice, got {picked}")
                    label = picked[0]
                validate_answer(label, query)
            except (ValueError, KeyError, IndexError, TypeError) as err:
                problems.append(f"task {n} (index {query.index}): {err}")
                continue
            line: dict[str, Any] = {"index": query.index, "label": label}
            if query.question_id is not None:
                line["question_id"] = query.question_id
            worker = _worker(annotation)
            if worker is not None:
                line["worker"] = worker
            lines.append(line)
    return lines, problems


def import_export(export: Any, queries_path: str | Path) -> tuple[int, list[str]]:
    """Append a Label Studio export's answers to the round's answers file; returns (lines written, problems)."""
    from trinity_lightning.rounds.oracle import read_query_file

    queries_path = Path(queries_path)
    lines, problems = answers_from_export(export, read_query_file(queries_path))
    answers = queries_path.with_name(queries_path.name.replace(".queries.jsonl", ".answers.jsonl"))
    for line in lines:
        append_answer(answers, line)
    return len(lines), problems


class LabelStudioOracle(Oracle):
    """Label Studio through its API (``pip install label-studio-sdk``): each round's queries become tasks of a
    project (one per round, with the config of :func:`labeling_config`); :meth:`collect` returns the answers
    once every task has a completed annotation (the last one wins; its annotator is the ``worker``).

    Args:
        url: the server, e.g. ``http://127.0.0.1:8080``.
        api_key: an access token of a Label Studio user.
        project: an existing project id to add tasks to (default: a new project per round).
        title: title of the projects created (``"{title} round {n}"``).
        choices: label names when the items are plain indices.
        directory: where to keep each round's queries and project id (``round_NNNN.queries.jsonl`` and
            ``round_NNNN.labelstudio.project``), so a restarted campaign collects from the same project
            instead of pushing the tasks again (default: kept in memory only).

    Example:
        >>> oracle = LabelStudioOracle("http://127.0.0.1:8080", "token")  # doctest: +SKIP
        >>> ActiveLearning(oracle=oracle, ...)  # doctest: +SKIP
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        project: int | None = None,
        title: str = "trinity",
        choices: Sequence[str] | None = None,
        directory: str | None = None,
    ) -> None:
        self.url, self.api_key, self.project, self.title = url, api_key, project, title
        self.directory = Path(directory) if directory else None
        self.choices = list(choices) if choices is not None else None
        self._queries: dict[int, list[Query]] = {}
        self._projects: dict[int, int] = {}
        self._client: Any = None

    def client(self) -> Any:
        """The ``label_studio_sdk`` client (imported on first use)."""
        if self._client is None:
            try:
                from label_studio_sdk.client import LabelStudio
            except ImportError as err:
                raise ImportError("LabelStudioOracle needs label-studio-sdk: pip install label-studio-sdk") from err
            self._client = LabelStudio(base_url=self.url, api_key=self.api_key)
        return self._client

    def query(self, round: int, items: Sequence[Query | int], datamodule: Any = None) -> None:
        queries = as_queries(items, datamodule, None, self.choices)
        for q in queries:
            if q.choices is None and self.choices is not None and q.kind != "yesno":
                q.choices = list(self.choices)
        if self.pending(round) is not None:
            return  # pushed before a restart: collect from the same project
        self._queries[round] = queries
        ls = self.client()
        project = self.project
        if project is None:
            config = labeling_config(queries[0])
            project = ls.projects.create(title=f"{self.title} round {round}", label_config=config).id
        self._projects[round] = int(project)
        ls.projects.import_tasks(id=project, request=to_tasks(queries, round))
        if self.directory is not None:
            from trinity_lightning.data.atomic import atomic_write_text

            self.directory.mkdir(parents=True, exist_ok=True)
            text = "".join(json.dumps(q.to_json(round)) + "\n" for q in queries)
            atomic_write_text(self.directory / f"round_{round:04d}.queries.jsonl", text)
            atomic_write_text(self.directory / f"round_{round:04d}.labelstudio.project", f"{int(project)}\n")

    def pending(self, round: int) -> list[Query] | None:
        if round not in self._queries and self.directory is not None:
            from trinity_lightning.rounds.oracle import read_query_file

            stem = self.directory / f"round_{round:04d}"
            queries, project = stem.with_suffix(".queries.jsonl"), stem.with_suffix(".labelstudio.project")
            if queries.exists() and project.exists():
                self._queries[round] = read_query_file(queries)
                self._projects[round] = int(project.read_text().strip())
        return self._queries.get(round)

    def collect(self, round: int) -> Answers | None:
        queries = self.pending(round)
        if queries is None:
            raise KeyError(f"round: round {round} was not queried through this oracle")
        ls = self.client()
        tasks = []
        for task in ls.tasks.list(project=self._projects[round], fields="all"):
            record = task.model_dump() if hasattr(task, "model_dump") else dict(task)
            if record.get("data", {}).get("trinity_round") == round:
                tasks.append(record)
        lines, _ = answers_from_export(tasks, queries)
        last = {line["index"]: line for line in lines}
        if not all(q.index in last for q in queries):
            return None
        return Answers(
            [q.index for q in queries],
            [validate_answer(last[q.index]["label"], q) for q in queries],
            [last[q.index].get("worker") for q in queries],
        )
