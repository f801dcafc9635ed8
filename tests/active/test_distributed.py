"""The campaign under DDP (2 CPU processes, gloo): each rank scores half the pool, the merged query is the
global top-k, and every rank labels the same examples."""

import json

import lightning.pytorch as pl
import pytest
from lightning.pytorch.callbacks import Callback

from trinity_lightning.active import ActiveLearning, Entropy
from trinity_lightning.active.scoring import score_pool

from ._helpers import datamodule, mlp


class _Probe(Callback):
    def __init__(self, al, root):
        self.al, self.root = al, root

    def on_train_epoch_end(self, trainer, pl_module):
        al, dm = self.al, trainer.datamodule
        if al.epochs_in_round != 0 or al.round == 0 or al.finished:
            return
        candidates = sorted(dm.pool_indices + al.last_query)  # the pool as it was when the query was made
        full = score_pool(pl_module, dm.pool_dataloader(candidates), Entropy(), len(al.last_query), candidates)
        record = {
            "rank": trainer.global_rank,
            "round": al.round,
            "query": sorted(al.last_query),
            "expected": sorted(full.indices),
            "labelled": dm.labelled_indices,
        }
        (self.root / f"rank{trainer.global_rank}_round{al.round}.json").write_text(json.dumps(record))


@pytest.mark.slow
@pytest.mark.distributed
def test_ddp_sharded_scoring_matches_global_topk(tmp_path):
    al = ActiveLearning("entropy", query_size=10, budget=42, epochs_per_round=1)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_epochs=-1,
        logger=False,
        default_root_dir=tmp_path,
        callbacks=[al, _Probe(al, tmp_path)],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(mlp(), datamodule=datamodule())
    records = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("rank*_round*.json"))]
    assert {(r["rank"], r["round"]) for r in records} == {(k, n) for k in (0, 1) for n in (1, 2, 3)}
    for r in records:
        assert r["query"] == r["expected"]
    by_round = {}
    for r in records:
        by_round.setdefault(r["round"], []).append(r["labelled"])
    assert all(a == b for a, b in by_round.values())
