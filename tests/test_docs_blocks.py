"""Every ```python block of README.md and docs/*.md runs as written (issue 14, item 21).

Each block runs in a fresh namespace, in a temporary working directory (the files it writes stay there), with
``TRINITY_DATA`` pointing at the shared data folder. An HTML comment on the line before the fence says what a
block needs, and the block runs under the matching pytest marker:

    <!-- docs-test: slow -->          the shared data, or more than a few seconds of CPU (``-m slow``)
    <!-- docs-test: gpu -->           a CUDA device (``-m gpu``; skipped without one)
    <!-- docs-test: distributed -->   several processes: the block runs under ``torchrun`` with 2 gloo workers

Markers combine (``<!-- docs-test: distributed slow -->``). A failing block's traceback names the Markdown file
and line. Run one block with ``pytest tests/test_docs_blocks.py -k "alpf.md:57"``.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from markdown_it import MarkdownIt

from trinity_lightning.data import data_root

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<marks>[^>]*?)\s*-->\s*$")
KNOWN_MARKS = {"slow", "gpu", "distributed"}


@dataclass(frozen=True)
class Block:
    """One ```python block: its file, the line of its opening fence (1-based), its code and its markers."""

    path: Path
    line: int
    code: str
    marks: frozenset[str] = field(default_factory=frozenset)

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    def source(self) -> str:
        """The code, shifted down so that traceback line numbers are the Markdown file's."""
        return "\n" * self.line + self.code


def python_blocks(path: Path) -> list[Block]:
    """The ```python fences of one Markdown file, each with the markers of the comment just before it."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    found = []
    for token in MarkdownIt().parse(text):
        if token.type != "fence" or token.info.split()[:1] != ["python"] or token.map is None:
            continue
        start = token.map[0]
        match = MARKER.match(lines[start - 1]) if start > 0 else None
        marks = frozenset(match.group("marks").split()) if match else frozenset()
        found.append(Block(path, start + 1, token.content, marks))
    return found


BLOCKS = [block for path in DOCS for block in python_blocks(path)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_distributed(block: Block, cwd: Path) -> None:
    script = cwd / "block.py"
    script.write_text(block.source(), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}"]
    done = subprocess.run([*command, str(script)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{block.name} failed under torchrun:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.mark.parametrize(
    "block",
    [pytest.param(b, id=b.name, marks=[getattr(pytest.mark, m) for m in sorted(b.marks)]) for b in BLOCKS],
)
def test_docs_block_runs_as_written(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if "gpu" in block.marks and not torch.cuda.is_available():
        pytest.skip(f"{block.name} needs a CUDA device")
    root = data_root().resolve()
    if block.marks & {"slow", "gpu"} and not root.is_dir():
        pytest.skip(f"{block.name} needs the shared data folder (not found at {root}; set TRINITY_DATA)")
    monkeypatch.setenv("TRINITY_DATA", str(root))
    monkeypatch.chdir(tmp_path)
    if "distributed" in block.marks:
        _run_distributed(block, tmp_path)
        return
    from trinity_lightning.active.strategies import STRATEGIES

    registered = dict(STRATEGIES)  # a block may register a query strategy: keep it out of later tests
    try:
        exec(compile(block.source(), str(block.path), "exec"), {"__name__": "__docs__"})
    finally:
        STRATEGIES.clear()
        STRATEGIES.update(registered)


def test_the_collector_finds_every_block_and_only_known_markers() -> None:
    assert len(BLOCKS) >= 16, [b.name for b in BLOCKS]  # README.md and docs/*.md held 16 when this was written
    for block in BLOCKS:
        assert block.marks <= KNOWN_MARKS, f"{block.name}: unknown docs-test marker {sorted(block.marks - KNOWN_MARKS)}"
    assert any(b.name.startswith("README.md:") for b in BLOCKS)


def test_a_marker_comment_applies_to_the_next_fence_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "Text\n\n<!-- docs-test: slow distributed -->\n```python\nx = 1\n```\n\n```python\ny = 2\n```\n\n"
        "```bash\nls\n```\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    first, second = python_blocks(page)
    assert (first.line, first.code, first.marks) == (4, "x = 1\n", frozenset({"slow", "distributed"}))
    assert (second.line, second.marks) == (8, frozenset())
    assert second.source().splitlines()[8] == "y = 2"  # traceback lines are the file's lines
