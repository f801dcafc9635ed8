"""``trinity label``: answer a round's queries in the terminal, one item at a time (all three answer kinds).

Reads a ``round_NNNN.queries.jsonl`` file written by :class:`~trinity_lightning.rounds.FileOracle` (by
``ActiveLearning`` or ``PartialFeedback``), shows each unanswered item with rich, takes the answer, validates
it against its query and appends it to the answers file at once (flushed and fsynced: a crash loses at most
the answer being typed). Run it again to continue where you stopped; answers already given are skipped.

Answers, by the query's kind:

* ``tags`` (a sentence, shown wrapped with each token's number): spans such as ``3-5 PER, 7 LOC`` (token
  numbers, inclusive; the app writes the BIO tags), or one tag per token separated by spaces (names such as
  ``B-PER`` or ids); an empty line tags every token ``O``; the count, the tag set and the BIO order are checked;
* ``class``: its name or its number;
* ``yesno`` (a question such as "Is this a dog?"): ``y`` or ``n``.

``s`` skips an item, ``u`` goes back to your previous answer to change it (the new answer wins), ``q`` or
Ctrl-C quits (every answer given so far is saved). Tokens are shown as text, never as rich markup. The arrow
keys edit the line (readline). ``--worker NAME`` records who answered (the ``worker`` field). A relabel query
(``"relabel": true``, from :class:`~trinity_lightning.active.ActiveRelabelling`) is marked with a ``RELABEL`` badge
and the workers who answered the item before (``answered_by``), with a warning when ``--worker`` is one of them.
``trinity label --web QUERIES`` serves the same queries as a web page instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from trinity_lightning.rounds.oracle import Query, append_answer, read_answer_file, read_query_file, validate_answer

__all__ = ["label_main", "relabel_note"]


def relabel_note(query: Query, worker: str | None = None) -> Text | None:
    """The mark of a relabel query (``None`` for a new item): a badge, who answered the item before (names as
    plain text, never markup) and, when ``worker`` is one of them, a warning.

    Example:
        >>> note = relabel_note(Query(3, relabel=True, answered_by=["ann", "[b]bo"]), "ann")
        >>> note.plain.split("; ")[1:]  # doctest: +NORMALIZE_WHITESPACE
        ['answered before by ann, [b]bo',
         'you (ann) answered it before: someone else should (your new answer would replace yours)']
        >>> relabel_note(Query(3, relabel=True)).plain
        'RELABEL another label of an item that is labelled already; earlier annotators not recorded'
        >>> relabel_note(Query(3)) is None
        True
    """
    if not query.relabel:
        return None
    note = Text()
    note.append("RELABEL", style="bold black on yellow")
    note.append(" another label of an item that is labelled already; ")
    if query.answered_by:
        note.append("answered before by ")
        note.append(", ".join(query.answered_by), style="bold")
    else:
        note.append("earlier annotators not recorded", style="dim")
    if worker is not None and worker in (query.answered_by or []):
        note.append(
            f"; you ({worker}) answered it before: someone else should (your new answer would replace yours)",
            style="bold red",
        )
    return note


def _show(
    console: Console, query: Query, position: int, total: int, previous: Any = None, worker: str | None = None
) -> None:
    example = query.example or {}
    console.rule(f"[bold]item {position}/{total}[/bold]  (index {query.index}, {escape(query.kind)})")
    note = relabel_note(query, worker)
    if note is not None:
        console.print(note)
    tokens = query.tokens
    if tokens is not None:  # wrapped at the terminal's width, every token as plain text (no markup)
        line = Text()
        for i, token in enumerate(tokens):
            line.append(f"{i}:", style="dim cyan")
            line.append(str(token), style="bold")
            line.append("  ")
        console.print(line, soft_wrap=False, overflow="fold")
    elif example:
        text = json.dumps(example.get("features", example) if isinstance(example, dict) else example)
        console.print(Text(text if len(text) < 400 else text[:400] + " ..."), soft_wrap=False)
    if query.kind == "yesno":
        console.print(f"[bold]{escape(query.question or '?')}[/bold]  (y/n)")
    elif query.kind == "tags" and query.choices:
        types = _span_types(query.choices)
        console.print("spans: [cyan]3-5 TYPE, 7 TYPE[/cyan] with TYPE one of " + escape(", ".join(types)))
        console.print(
            "or one tag per token: " + "  ".join(f"[cyan]{i}[/cyan]={escape(n)}" for i, n in enumerate(query.choices))
        )
    elif query.choices:
        console.print(
            "choices: " + "  ".join(f"[cyan]{i}[/cyan]={escape(name)}" for i, name in enumerate(query.choices))
        )
    if previous is not None:
        shown = " ".join(previous) if isinstance(previous, list) else str(previous)
        console.print(Text(f"your answer: {shown} (type a new one to change it, s keeps it)", style="yellow"))


def _numbered(names: Sequence[str]) -> str:
    return "  ".join(f"[cyan]{i}[/cyan]={escape(name)}" for i, name in enumerate(names))


def _span_types(choices: Sequence[str]) -> list[str]:
    """Entity types of a tag set: ``PER`` for ``B-PER``/``I-PER``; a plain tag set's non-``O`` tags."""
    if all(c == "O" or c[:2] in ("B-", "I-") for c in choices):
        return list(dict.fromkeys(c[2:] for c in choices if c != "O"))
    return [c for c in choices if c != "O"]


_SPAN = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+))?\s+(\S+)\s*$")


def parse_spans(raw: str, tokens: Sequence[str], choices: Sequence[str]) -> list[str] | None:
    """Tags from span shorthand ``"3-5 PER, 7 LOC"`` (token numbers from 0, inclusive), or ``None`` if it is not one.

    Raises:
        ValueError: a span out of range, backwards, overlapping another, or of an unknown type.

    Example:
        >>> parse_spans("0-1 PER, 3 LOC", ["Anna", "Smith", "in", "Rome"], ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])
        ['B-PER', 'I-PER', 'O', 'B-LOC']
        >>> parse_spans("B-PER O", ["a", "b"], ["O", "B-PER"]) is None
        True
    """
    parts = [p for p in re.split(r"[,;]", raw) if p.strip()]
    matches = [_SPAN.match(p) for p in parts]
    if not parts or not all(matches):
        return None
    types = _span_types(choices)
    bio = all(c == "O" or c[:2] in ("B-", "I-") for c in choices)
    tags = ["O"] * len(tokens)
    for m in matches:
        assert m is not None
        start, end, kind = int(m.group(1)), int(m.group(2) or m.group(1)), m.group(3)
        if kind not in types:
            if kind.isdigit():
                return None  # "0 3": tag ids, not a span
            raise ValueError(f"unknown entity type {kind!r}; expected one of {types}")
        if not 0 <= start <= end < len(tokens):
            raise ValueError(f"span {start}-{end} is outside the tokens 0-{len(tokens) - 1} (or backwards)")
        if any(t != "O" for t in tags[start : end + 1]):
            raise ValueError(f"span {start}-{end} {kind} overlaps another span")
        for i in range(start, end + 1):
            tags[i] = (("B-" if i == start else "I-") + kind) if bio else kind
    return tags


def _parse(raw: str, query: Query) -> Any:
    """The answer to write: tag names, a class name, or "yes"/"no" (validated against the query)."""
    if query.kind == "tags":
        tokens = query.tokens or []
        spans = parse_spans(raw, tokens, query.choices) if query.choices else None
        value = validate_answer(spans or raw.split() or ["O"] * len(tokens), query)
        return [query.choices[i] for i in value] if query.choices else value
    if not raw.strip():
        raise ValueError("type y or n" if query.kind == "yesno" else "type a class name or number")
    value = validate_answer(raw.strip(), query)
    if query.kind == "yesno":
        return "yes" if value else "no"
    return query.choices[value] if query.choices else value


def label_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``trinity label``; returns the exit code.

    Example:
        >>> label_main(["--help"])  # doctest: +ELLIPSIS
        usage: trinity label ...
        0
    """
    argv = list(argv) if argv is not None else sys.argv[1:]
    if "--web" in argv:  # the labelling page (trinity_lightning.rounds.web)
        from trinity_lightning.rounds.web.app import web_main

        return web_main([a for a in argv if a != "--web"])
    parser = argparse.ArgumentParser(
        prog="trinity label", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("queries", help="a round_NNNN.queries.jsonl file written by FileOracle")
    parser.add_argument("--answers", default=None, help="answers file (default: round_NNNN.answers.jsonl beside it)")
    parser.add_argument("--choices", default=None, help="comma-separated label names (default: from the queries)")
    parser.add_argument("--worker", default=None, help="your name or id, written with every answer")
    parser.add_argument("--web", action="store_true", help="serve a labelling page (see --web --help)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    console = Console(highlight=False, soft_wrap=True)
    queries_path = Path(args.queries)
    if not queries_path.is_file():
        console.print(f"[red]trinity label: no such query file: {queries_path}[/red]")
        return 2
    try:
        queries = read_query_file(queries_path)
    except ValueError as err:
        console.print(f"[red]trinity label: {err}[/red]")
        return 2
    if args.choices:
        for q in queries:
            if q.kind != "yesno":
                q.choices = args.choices.split(",")
    name = queries_path.name.replace(".queries.jsonl", ".answers.jsonl")
    if name == queries_path.name:
        name = queries_path.stem + ".answers.jsonl"
    answers_path = Path(args.answers) if args.answers else queries_path.with_name(name)
    done, problems = read_answer_file(answers_path, queries)
    for problem in problems:
        console.print(f"[yellow]skipped invalid answer {problem}[/yellow]")
    todo = [q for q in queries if q.index not in done]
    console.print(
        f"{len(queries)} queries, {len(queries) - len(todo)} already answered, {len(todo)} to go; "
        f"answers go to {answers_path}"
    )
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401 - arrow keys and history in input()
    answered, position, history = 0, 0, list[int]()  # history: positions answered this session (for undo)
    given: dict[int, Any] = {}
    try:
        while position < len(todo):
            query = todo[position]
            _show(console, query, position + 1, len(todo), given.get(query.index), args.worker)
            while True:
                try:
                    raw = console.input("[bold]answer[/bold] (s: skip, u: undo, q: quit)> ")
                except EOFError:
                    console.print(f"\nstopped: {answered} answered this session")
                    return 0
                command = raw.strip()
                if command == "q":
                    console.print(f"stopped: {answered} answered this session")
                    return 0
                if command == "s":
                    position += 1
                    break
                if command == "u":
                    if not history:
                        console.print("[yellow]nothing to undo yet[/yellow]")
                        continue
                    position = history.pop()
                    break
                try:
                    label = _parse(raw, query)
                except ValueError as err:
                    console.print(Text(str(err), style="red"))
                    continue
                record: dict[str, Any] = {"index": query.index, "label": label}
                if query.question_id is not None:
                    record["question_id"] = query.question_id
                if args.worker:
                    record["worker"] = args.worker
                append_answer(answers_path, record)
                given[query.index] = label
                answered += 1
                history.append(position)
                position += 1
                break
    except KeyboardInterrupt:
        console.print(f"\nstopped (Ctrl-C): {answered} answered this session, every answer given is saved")
        return 130
    remaining = len([q for q in queries if q.index not in read_answer_file(answers_path, queries)[0]])
    console.print(f"done: {answered} answered this session, {remaining} still open")
    return 0
