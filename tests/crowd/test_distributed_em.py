"""Sharded Dawid-Skene, one-coin DS, MACE and GLAD over 2 gloo processes equal the single-process fit to 1e-10."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from tests.crowd import _distributed_em_workers as dw
from tests.distributed import _workers as w
from trinity_lightning.crowd import GLAD, MACE, DawidSkene

pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    return w.launch(dw.fit_worker, 2, tmp_path_factory.mktemp("dist_em"))


def test_shards_are_uneven_and_split_items():
    table = dw.frame()
    first, second = dw.shards(table)
    assert len(first) + len(second) == len(table)
    assert len(first) < 0.45 * len(table)
    split = set(first["task"]) & set(second["task"])
    assert {"i077", "i120", "i199", "i255"} <= split
    assert "w8" not in set(first["worker"])  # rank 0 never saw worker w8: the vocabularies are merged


@pytest.mark.parametrize("name", list(dw.VARIANTS))
def test_sharded_fit_equals_single_process(reports, name):
    cls, kwargs, fit_kwargs = dw.VARIANTS[name]
    single = cls(**kwargs).fit(dw.frame(), classes=dw.CLASSES, **fit_kwargs)
    items = list(single.table_.item_ids)
    assert reports[0][name]["workers"] == list(single.table_.worker_ids)
    for report in reports:
        got = report[name]
        for key in (*dw.ATTRIBUTES[cls.__name__], "worker_accuracy_"):
            expected, value = getattr(single, key), got[key]
            if isinstance(expected, torch.Tensor):
                assert (value - expected).abs().max() < 1e-10, key
            elif isinstance(expected, list):  # the log-likelihood of every E-step
                assert torch.allclose(torch.tensor(value), torch.tensor(expected), rtol=1e-12, atol=0), key
            else:
                assert value == pytest.approx(expected, rel=1e-12), key
        rows = torch.tensor([items.index(item) for item in got["items"]])
        assert (got["probas_"] - single.probas_[rows]).abs().max() < 1e-10
        for key in dw.PER_ITEM.get(cls.__name__, ()):
            assert (got[key] - getattr(single, key)[rows]).abs().max() < 1e-10, key
    assert sorted(set(reports[0][name]["items"]) | set(reports[1][name]["items"])) == items
    assert getattr(single, "n_iter_", 20) > 3  # EM really iterated


def test_class_mismatch_is_a_clear_error_on_every_rank(reports):
    for report in reports:
        message = report["mismatch"]
        assert message.startswith("ShardError: DawidSkene.fit(process_group=...): classes:")
        assert "rank 0: ['a', 'b', 'c']; rank 1: ['a', 'b', 'c', 'd']" in message


def test_empty_shard_is_an_error_on_every_rank(reports):
    for report in reports:
        assert report["empty"] == (
            "ShardError: DawidSkene.fit(process_group=...): rank 1: the shard is empty "
            "(every rank needs at least one annotation)"
        )


def test_process_group_needs_initialised_distributed():
    with pytest.raises(RuntimeError, match="init_process_group"):
        DawidSkene().fit(dw.frame(), process_group=True)


@pytest.fixture
def one_rank():
    """A 1-process gloo group in this process (no spawn), destroyed afterwards."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_one_rank_group_equals_the_plain_fit(one_rank):
    frame = dw.frame()
    alone = DawidSkene(dtype=torch.float64).fit(frame)
    grouped = DawidSkene(dtype=torch.float64).fit(frame, process_group=True)
    assert grouped.n_iter_ == alone.n_iter_
    assert (grouped.probas_ - alone.probas_).abs().max() < 1e-12
    assert (grouped.errors_ - alone.errors_).abs().max() < 1e-12


def test_what_the_sharded_fit_refuses(one_rank):
    frame = dw.frame()
    with pytest.raises(ValueError, match=r"rank 0: init_posteriors: not supported by the sharded fit"):
        DawidSkene().fit(frame, init_posteriors=torch.full((260, 3), 1 / 3), process_group=True)
    with pytest.raises(ValueError, match=r"rank 0: random_state=None \(every rank must draw the same start\)"):
        MACE(random_state=None).fit(frame, process_group=True)
    with pytest.raises(ValueError, match=r"rank 0: crowdkit_compat=True \(SciPy CG takes per-rank line-search steps\)"):
        GLAD(crowdkit_compat=True).fit(frame, process_group=True)
    with pytest.raises(ValueError, match=r"rank 0: DataFormatError: .*field 'label': missing column") as caught:
        DawidSkene().fit(frame.drop(columns="label"), process_group=True)
    assert type(caught.value.__cause__).__name__ == "DataFormatError"  # the rank's own error is chained
