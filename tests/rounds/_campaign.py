"""A small active-learning campaign that can be killed at a chosen point, for the kill-anywhere tests.

``run(root, kill)`` runs (or resumes, when ``root/ckpt/last.ckpt`` exists) a BALD campaign on Gaussian blobs
with a dropout model, a :class:`FileOracle` whose "person" answers every query from the gold labels (one
fsynced line at a time) and a ``ModelCheckpoint(save_last=True)``. ``kill = (phase, n)`` stops the process
at the ``n``-th occurrence of ``phase``:

* ``train``: after an optimizer step; ``score``: during a forward pass in eval mode (pool scoring or
  validation); ``query``: while the query file is written (temp file written, not renamed);
* ``answer``: after an answer line was appended; ``loaded``: right after the answers were applied
  (labels file written); ``labels``: in the middle of writing the labels file.

In a subprocess (``python _campaign.py ROOT PHASE N``) the stop is ``SIGKILL``; in-process it raises
:class:`Killed` (a ``BaseException`` that Lightning re-raises), which leaves the same files behind.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import nn

PHASES = ("train", "score", "query", "answer", "loaded", "labels")


PROBE: list[Any] | None = None  # set to a list to record (epoch, RNG, weights, labels) at each epoch start


class Killed(BaseException):
    pass


class _Kill:
    def __init__(self, kill: tuple[str, int] | None, hard: bool) -> None:
        self.phase, self.n = kill if kill else (None, 0)
        self.hard, self.seen = hard, dict.fromkeys(PHASES, 0)

    def tick(self, phase: str) -> None:
        self.seen[phase] += 1
        if phase == self.phase and self.seen[phase] == self.n:
            if self.hard:
                os.kill(os.getpid(), signal.SIGKILL)
            raise Killed(f"{phase}:{self.n}")


def _half_write(kill: _Kill, phase: str, original: Any) -> Any:
    def write(path: Any, *args: Any, **kwargs: Any) -> None:
        if kill.phase == phase and kill.seen[phase] + 1 == kill.n:  # the n-th write: a temp file, never renamed
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fd, _ = tempfile.mkstemp(prefix=f".{Path(path).name}.", suffix=".tmp", dir=Path(path).parent)
            os.write(fd, b'{"half": ')
            os.close(fd)
        kill.tick(phase)
        original(path, *args, **kwargs)

    return write


def run(root: str | Path, kill: tuple[str, int] | None = None, hard: bool = False) -> dict[str, Any]:
    """Run or resume the campaign under ``root``; returns what a finished run ends with."""
    import trinity_lightning.active.datamodule as datamodule_module
    import trinity_lightning.rounds.oracle as oracle_module

    root = Path(root)
    killer = _Kill(kill, hard)
    saved = oracle_module.atomic_write_text, datamodule_module.atomic_write_json
    oracle_module.atomic_write_text = _half_write(killer, "query", saved[0])  # type: ignore[assignment]
    datamodule_module.atomic_write_json = _half_write(killer, "labels", saved[1])  # type: ignore[assignment]
    try:
        return _run(root, killer)
    finally:
        oracle_module.atomic_write_text, datamodule_module.atomic_write_json = saved  # type: ignore[assignment]


def _run(root: Path, killer: _Kill) -> dict[str, Any]:
    from trinity_lightning.active import ActiveLearning, ActiveLearningDataModule, FileOracle
    from trinity_lightning.data import ArrayDataset
    from trinity_lightning.models import Classifier
    from trinity_lightning.rounds.oracle import append_answer

    def blobs(n: int, seed: int) -> ArrayDataset:
        g = torch.Generator().manual_seed(seed)
        y = torch.arange(n) % 3
        centers = torch.tensor([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])
        return ArrayDataset(centers[y] + torch.randn(n, 4, generator=g), y)

    pool = blobs(160, 0)

    class ScriptedOracle(FileOracle):
        """A person who answers each query from the gold labels, one fsynced line at a time."""

        def collect(self, round: int) -> Any:
            path = self.answers_path(round)
            lines = path.read_text().splitlines() if path.exists() else []
            done = {json.loads(x)["index"] for x in lines if x.strip().endswith("}")}
            for index in self.pending_indices(round) or []:
                if index not in done:
                    append_answer(self.answers_path(round), {"index": index, "label": int(pool.labels[index])})
                    killer.tick("answer")
            return super().collect(round)

    class Loaded(ActiveLearningDataModule):
        def label(self, indices: Any, labels: Any = None, advance_round: bool = True) -> None:
            super().label(indices, labels, advance_round)
            if advance_round:
                killer.tick("loaded")

    class Ticks(Callback):
        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            if PROBE is not None and batch_idx == 0:
                weights = sum(float(p.double().sum()) for p in pl_module.parameters())
                PROBE.append(
                    (trainer.current_epoch, int(torch.get_rng_state().double().sum()), weights, batch[1].tolist())
                )

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            killer.tick("train")

    pl.seed_everything(0, verbose=False)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 3))
    # the first layer runs in every eval-mode pass: validation and pool scoring (BALD runs the trunk once per batch)
    net[0].register_forward_hook(lambda module, args, out: None if module.training else killer.tick("score"))
    model = Classifier(model=net, num_classes=3, lr=0.02)
    dm = Loaded(
        pool, val=blobs(48, 1), num_classes=3, initial_labelled=10, batch_size=16, labels_path=str(root / "labels.json")
    )
    al = ActiveLearning(
        "bald",
        query_size=6,
        budget=34,
        epochs_per_round=2,
        strategy_kwargs={"n_samples": 3},
        oracle=ScriptedOracle(str(root / "queries"), poll_seconds=0.01, timeout=0),
        curve_path=str(root / "curve.csv"),
    )
    last = root / "ckpt" / "last.ckpt"
    trainer = pl.Trainer(
        max_epochs=-1,
        callbacks=[al, Ticks(), ModelCheckpoint(dirpath=root / "ckpt", save_last=True)],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        accelerator="cpu",
    )
    trainer.fit(model, datamodule=dm, ckpt_path=str(last) if last.exists() else None)
    torch.save(model.state_dict(), root / "final.pt")
    (root / "ticks.json").write_text(json.dumps(killer.seen))  # how often each phase occurred (this process)
    return outcome(root)


def outcome(root: Path) -> dict[str, Any]:
    """Everything a finished campaign leaves behind, in comparable form (timings dropped)."""
    import csv

    from trinity_lightning.active.oracles import read_answers

    answers = {p.name: read_answers(p)[0] for p in sorted((root / "queries").glob("round_*.answers.jsonl"))}
    queries = {p.name: p.read_text() for p in sorted((root / "queries").glob("round_*.queries.jsonl"))}
    curve = [
        {k: v for k, v in row.items() if not k.endswith("seconds")}
        for row in csv.DictReader((root / "curve.csv").open())
    ]
    return {
        "labels": json.loads((root / "labels.json").read_text()),
        "answers": answers,
        "queries": queries,
        "curve": curve,
        "weights": torch.load(root / "final.pt"),
    }


if __name__ == "__main__":
    phase, n = (sys.argv[2], int(sys.argv[3])) if len(sys.argv) > 3 else (None, 0)
    run(sys.argv[1], (phase, n) if phase else None, hard=True)
