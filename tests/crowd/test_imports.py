"""``import trinity_lightning.crowd`` and fitting an aggregator must not import Lightning (issue 14, item 23)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")

SCRIPT = """
import sys
import trinity_lightning.crowd as crowd
frame = {"task": ["a", "a", "b", "b"], "worker": ["w1", "w2", "w1", "w2"], "label": ["x", "x", "y", "x"]}
for cls in (crowd.MajorityVote, crowd.DawidSkene, crowd.OneCoinDawidSkene):
    cls().fit(frame).to_frame()
crowd.AnnotationTable.read(frame)
crowd.simulate_annotations([0, 1], crowd.hammer_spammer_confusions(3, 2, 1.0))
from trinity_lightning.crowd import cli
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("lightning", "pytorch_lightning", "torchmetrics"))
print("LOADED", loaded)
"""


def _run(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_aggregators_and_table_import_and_fit_without_lightning() -> None:
    assert "LOADED []" in _run(SCRIPT)


def test_crowd_cli_help_imports_neither_torch_nor_lightning() -> None:
    code = (
        "import sys\nfrom trinity_lightning.crowd import cli\n"
        "try:\n    cli.main(['aggregate', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('HEAVY', sorted(m for m in ('torch', 'lightning', 'pandas') if m in sys.modules))"
    )
    assert "HEAVY []" in _run(code)


def test_lightning_names_still_resolve_lazily() -> None:
    import trinity_lightning.crowd as crowd
    from trinity_lightning.crowd.callback import CrowdEM

    assert crowd.CrowdEM is CrowdEM
    assert "SimulatedCrowdDataModule" in dir(crowd)
    with pytest.raises(AttributeError, match="NoSuchThing"):
        crowd.NoSuchThing  # noqa: B018
