"""``trinity label``: answer an active-learning query batch in the terminal, one example at a time.

Reads a query file written by :class:`~trinity_lightning.active.FileOracle` (``round_NNNN.queries.jsonl``),
shows each unanswered example with rich, takes the answer, and appends it to the answers file at once
(flushed and fsynced: a crash loses at most the answer being typed). Run it again to continue where
you stopped; answers already given are skipped.

Answers: for a sentence, one tag per token separated by spaces (names such as ``B-PER`` or ids;
an empty line tags every token ``O``); for a class, its name or its number. ``s`` skips an example,
``q`` quits.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from trinity_lightning.active.oracles import parse_label, read_answers

__all__ = ["label_main"]


def _read_queries(path: Path) -> list[dict[str, Any]]:
    queries = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
            int(record["index"])
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{path}:{number}: not a query line (expected JSON with an 'index')") from None
        queries.append(record)
    return queries


def _show(console: Console, query: dict[str, Any], position: int, total: int, choices: list[str] | None) -> None:
    example = query.get("example") or {}
    console.rule(f"[bold]example {position}/{total}[/bold]  (index {query['index']}, round {query.get('round')})")
    tokens = example.get("tokens") if isinstance(example, dict) else None
    if tokens is not None:
        table = Table(show_header=True, box=None)
        for i in range(len(tokens)):
            table.add_column(str(i), justify="center")
        table.add_row(*[str(t) for t in tokens])
        console.print(table)
    else:
        text = json.dumps(example.get("features", example) if isinstance(example, dict) else example)
        console.print(text if len(text) < 400 else text[:400] + " ...")
    if choices:
        console.print("choices: " + "  ".join(f"[cyan]{i}[/cyan]={name}" for i, name in enumerate(choices)))


def _parse(raw: str, query: dict[str, Any], choices: list[str] | None) -> Any:
    tokens = (query.get("example") or {}).get("tokens") if isinstance(query.get("example"), dict) else None
    if tokens is not None:
        parts = raw.split() or ["O"] * len(tokens)
        if len(parts) != len(tokens):
            raise ValueError(f"expected {len(tokens)} tags (one per token), got {len(parts)}")
        label = parse_label(parts, choices)
        return [choices[i] for i in label] if choices and isinstance(label, list) else label
    if not raw.strip():
        raise ValueError("type a class name or number")
    value = parse_label(raw.strip(), choices)
    return choices[value] if choices and isinstance(value, int) else value


def _append(path: Path, record: dict[str, Any]) -> None:
    torn = False  # a line cut short by a crash must not swallow the next answer
    if path.exists() and path.stat().st_size:
        with path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            torn = handle.read(1) != b"\n"
    with path.open("a", encoding="utf-8") as handle:
        handle.write(("\n" if torn else "") + json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def label_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``trinity label``; returns the exit code.

    Example:
        >>> label_main(["--help"])  # doctest: +ELLIPSIS
        usage: trinity label ...
        0
    """
    parser = argparse.ArgumentParser(
        prog="trinity label", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("queries", help="a round_NNNN.queries.jsonl file written by FileOracle")
    parser.add_argument("--answers", default=None, help="answers file (default: round_NNNN.answers.jsonl beside it)")
    parser.add_argument("--choices", default=None, help="comma-separated label names (default: from the queries)")
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    console = Console(highlight=False, soft_wrap=True)
    queries_path = Path(args.queries)
    if not queries_path.is_file():
        console.print(f"[red]trinity label: no such query file: {queries_path}[/red]")
        return 2
    try:
        queries = _read_queries(queries_path)
    except ValueError as err:
        console.print(f"[red]trinity label: {err}[/red]")
        return 2
    name = queries_path.name.replace(".queries.jsonl", ".answers.jsonl")
    if name == queries_path.name:
        name = queries_path.stem + ".answers.jsonl"
    answers_path = Path(args.answers) if args.answers else queries_path.with_name(name)
    choices = (
        args.choices.split(",") if args.choices else next((q.get("choices") for q in queries if q.get("choices")), None)
    )
    done, problems = read_answers(answers_path, choices)
    for problem in problems:
        console.print(f"[yellow]skipped malformed answer {problem}[/yellow]")
    todo = [q for q in queries if int(q["index"]) not in done]
    console.print(
        f"{len(queries)} queries, {len(queries) - len(todo)} already answered, {len(todo)} to go; "
        f"answers go to {answers_path}"
    )
    answered = 0
    for position, query in enumerate(todo, start=1):
        _show(console, query, position, len(todo), choices)
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
                label = _parse(raw, query, choices)
            except ValueError as err:
                console.print(f"[red]{err}[/red]")
                continue
            _append(answers_path, {"index": int(query["index"]), "label": label})
            answered += 1
            break
    remaining = len([q for q in queries if int(q["index"]) not in read_answers(answers_path, choices)[0]])
    console.print(f"done: {answered} answered this session, {remaining} still open")
    return 0
