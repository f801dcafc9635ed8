"""``trinity label``: answer a round's queries in the terminal, one item at a time (all three answer kinds).

Reads a ``round_NNNN.queries.jsonl`` file written by :class:`~trinity_lightning.rounds.FileOracle` (by
``ActiveLearning`` or ``PartialFeedback``), shows each unanswered item with rich, takes the answer, validates
it against its query and appends it to the answers file at once (flushed and fsynced: a crash loses at most
the answer being typed). Run it again to continue where you stopped; answers already given are skipped.

Answers, by the query's kind:

* ``tags`` (a sentence): one tag per token separated by spaces (names such as ``B-PER`` or ids); an empty
  line tags every token ``O``; the count, the tag set and the BIO order are checked;
* ``class``: its name or its number;
* ``yesno`` (a question such as "Is this a dog?"): ``y`` or ``n``.

``s`` skips an item, ``q`` quits. ``--worker NAME`` records who answered (the ``worker`` field).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from trinity_lightning.rounds.oracle import Query, append_answer, read_answer_file, read_query_file, validate_answer

__all__ = ["label_main"]


def _show(console: Console, query: Query, position: int, total: int) -> None:
    example = query.example or {}
    console.rule(f"[bold]item {position}/{total}[/bold]  (index {query.index}, {query.kind})")
    tokens = query.tokens
    if tokens is not None:
        table = Table(show_header=True, box=None)
        for i in range(len(tokens)):
            table.add_column(str(i), justify="center")
        table.add_row(*[str(t) for t in tokens])
        console.print(table)
    elif example:
        text = json.dumps(example.get("features", example) if isinstance(example, dict) else example)
        console.print(text if len(text) < 400 else text[:400] + " ...")
    if query.kind == "yesno":
        console.print(f"[bold]{query.question or '?'}[/bold]  (y/n)")
    elif query.choices:
        console.print("choices: " + "  ".join(f"[cyan]{i}[/cyan]={name}" for i, name in enumerate(query.choices)))


def _parse(raw: str, query: Query) -> Any:
    """The answer to write: tag names, a class name, or "yes"/"no" (validated against the query)."""
    if query.kind == "tags":
        tokens = query.tokens or []
        value = validate_answer(raw.split() or ["O"] * len(tokens), query)
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
    answered = 0
    for position, query in enumerate(todo, start=1):
        _show(console, query, position, len(todo))
        while True:
            try:
                raw = console.input("[bold]answer[/bold] (s: skip, q: quit)> ")
            except EOFError:
                console.print(f"\nstopped: {answered} answered this session")
                return 0
            if raw.strip() == "q":
                console.print(f"stopped: {answered} answered this session")
                return 0
            if raw.strip() == "s":
                break
            try:
                label = _parse(raw, query)
            except ValueError as err:
                console.print(f"[red]{err}[/red]")
                continue
            record: dict[str, Any] = {"index": query.index, "label": label}
            if query.question_id is not None:
                record["question_id"] = query.question_id
            if args.worker:
                record["worker"] = args.worker
            append_answer(answers_path, record)
            answered += 1
            break
    remaining = len([q for q in queries if q.index not in read_answer_file(answers_path, queries)[0]])
    console.print(f"done: {answered} answered this session, {remaining} still open")
    return 0
