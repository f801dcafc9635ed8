"""Stopping criteria (issue 23): low uncertainty, stabilizing predictions (kappa), ΔF, budget; resume exactly."""

import math

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import nn

from trinity_lightning.active import ActiveLearning, ActiveLearningDataModule
from trinity_lightning.models import Classifier
from trinity_lightning.rounds.stopping import (
    Budget,
    DeltaF,
    LowUncertainty,
    StabilizingPredictions,
    cohen_kappa,
    where_stops,
)

from ._helpers import blobs, datamodule


def _trainer(root, *callbacks, **kwargs):
    return pl.Trainer(
        max_epochs=-1,
        callbacks=list(callbacks),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        **kwargs,
    )


def _model():
    torch.manual_seed(0)
    return Classifier(model=nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3)), num_classes=3, lr=0.05)


def test_kappa_and_curve_only_decisions():
    assert cohen_kappa(torch.tensor([0, 1, 1, 0]), torch.tensor([0, 1, 0, 0]), 2) == 0.5
    assert cohen_kappa(torch.zeros(5, dtype=torch.long), torch.zeros(5, dtype=torch.long), 3) == 1.0
    nan = float("nan")
    rows = [
        {"labelled": 10, "val_f1": 0.50, "stop/kappa": nan, "stop/uncertainty": 0.30},
        {"labelled": 20, "val_f1": 0.70, "stop/kappa": 0.90, "stop/uncertainty": 0.20},
        {"labelled": 30, "val_f1": 0.705, "stop/kappa": 0.995, "stop/uncertainty": 0.12},
        {"labelled": 40, "val_f1": 0.706, "stop/kappa": 0.999, "stop/uncertainty": 0.04},
        {"labelled": 50, "val_f1": 0.706, "stop/kappa": 0.992, "stop/uncertainty": 0.03},
    ]
    criteria = [
        DeltaF("val_f1", threshold=0.01, window=2),
        StabilizingPredictions(0.99, window=3),
        LowUncertainty(0.05),
        Budget(50),
        Budget(1000),
    ]
    assert where_stops(criteria, rows) == {
        "DeltaF": 3,
        "StabilizingPredictions": 4,
        "LowUncertainty": 3,
        "Budget": 4,
        "Budget(column='labelled', value=1000)": None,
    }


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="monitor"):
        DeltaF(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"monitor: DeltaF reads 'val_f1'.*labelled"):
        DeltaF("val_f1").should_stop([{"labelled": 10}])
    for make, what in [
        (lambda: StabilizingPredictions(1.5), "threshold"),
        (lambda: StabilizingPredictions(window=0), "window"),
        (lambda: LowUncertainty(kind="variance"), "kind"),
        (lambda: LowUncertainty(sample=0), "sample"),
        (lambda: Budget(10, unit="words"), "unit"),
    ]:
        with pytest.raises(ValueError, match=what):
            make()


def test_delta_f_without_validation_metric_is_refused_in_a_campaign(tmp_path):
    al = ActiveLearning("entropy", query_size=10, budget=60, stopping=[DeltaF("val_f1")])
    with pytest.raises(ValueError, match=r"monitor: DeltaF\(monitor='val_f1'\).*val_acc"):
        _trainer(tmp_path, al).fit(_model(), datamodule=datamodule(tmp_path))
    no_val = ActiveLearningDataModule(blobs(), initial_labelled=12, batch_size=16, num_classes=3)
    al = ActiveLearning("entropy", query_size=10, budget=60, stopping=[DeltaF("val_acc")])
    with pytest.raises(ValueError, match=r"DeltaF\(monitor='val_acc'\) needs a validation metric.*\['train_loss'\]"):
        _trainer(tmp_path, al, limit_val_batches=0).fit(_model(), datamodule=no_val)


def test_campaign_records_measures_and_stops_on_stable_predictions(tmp_path):
    stable = StabilizingPredictions(threshold=0.9, window=2, size=100)
    low = LowUncertainty(threshold=0.0, sample=50)  # never stops: only recorded
    al = ActiveLearning("entropy", query_size=10, budget=200, epochs_per_round=2, stopping=[stable, low])
    dm = datamodule(tmp_path)
    _trainer(tmp_path, al).fit(_model(), datamodule=dm)
    kappas = [row["stop/kappa"] for row in al.curve]
    assert math.isnan(kappas[0]) and all(0.0 <= k <= 1.0 for k in kappas[1:])
    assert al.finished and dm.n_labelled < 200  # stopped by the kappa criterion before the budget
    assert all(k >= 0.9 for k in kappas[-2:]) and not all(k >= 0.9 for k in kappas[-3:-1] if not math.isnan(k))
    assert len(stable.stop_set or []) == 100 and stable.previous is not None and len(stable.previous) == 100
    uncertainty = [row["stop/uncertainty"] for row in al.curve]
    assert all(0.0 <= u < 2 / 3 for u in uncertainty) and uncertainty[-1] < uncertainty[0]
    assert where_stops([stable], al.curve) == {"StabilizingPredictions": len(al.curve) - 1}


class _Crash(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated crash")


def test_stopping_state_in_checkpoint_and_resume(tmp_path):
    def run(root, crash_epoch=None, ckpt_path=None):
        stable = StabilizingPredictions(threshold=0.999, window=3, size=80)
        low = LowUncertainty(threshold=0.0, sample=40)
        al = ActiveLearning(
            "entropy", query_size=10, budget=62, epochs_per_round=2, stopping=[stable, low, DeltaF("val_acc", 0.0)]
        )
        ckpt = ModelCheckpoint(dirpath=root / "ckpt", save_last=True)
        cbs = [al, ckpt] + ([_Crash(crash_epoch)] if crash_epoch is not None else [])
        _trainer(root, *cbs).fit(_model(), datamodule=datamodule(root), ckpt_path=ckpt_path)
        return al, stable

    ref, ref_stable = run(tmp_path / "ref")
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tmp_path / "run", crash_epoch=5)
    saved = torch.load(tmp_path / "run" / "ckpt" / "last.ckpt", weights_only=False)
    state = next(v for k, v in saved["callbacks"].items() if k.startswith("ActiveLearning"))
    assert state["stopping"][0]["stop_set"] == ref_stable.stop_set and len(state["stopping"][0]["previous"]) == 80
    assert state["stopping"][1] == {"rounds": 2}  # rounds 0 and 1 measured before the crash
    al, stable = run(tmp_path / "run", ckpt_path="last")
    columns = ("labelled", "stop/kappa", "stop/uncertainty", "val_acc")
    assert len(al.curve) == len(ref.curve) == 6

    def table(curve):
        return [[None if math.isnan(r[c]) else round(r[c], 5) for c in columns] for r in curve]

    assert table(al.curve) == table(ref.curve)
    assert torch.equal(stable.previous, ref_stable.previous)


def _tagger_output():
    """Two sentences of an "O"-dominated tagger: 9 sure "O" words + 1 unsure entity; 3 sure words + padding."""
    sure, unsure, noise = [0.99, 0.005, 0.005], [0.5, 0.3, 0.2], [1 / 3, 1 / 3, 1 / 3]
    probs = torch.tensor([[sure] * 9 + [unsure], [sure] * 3 + [noise] * 7])
    mask = torch.tensor([[True] * 10, [True] * 3 + [False] * 7])
    return probs.log(), mask


def test_sentence_level_uncertainty_is_not_drowned_by_o_tokens():
    log_p, mask = _tagger_output()
    token = LowUncertainty(reduce="token")
    # per token: 12 words at 0.01 and one at 0.5 -> mean 0.0477, under a 0.05 threshold although a sentence is unsure
    assert float((token.uncertainty(log_p) * mask).sum() / mask.sum()) == pytest.approx((12 * 0.01 + 0.5) / 13)
    assert token.sentence_scores(log_p, mask).tolist() == pytest.approx([(9 * 0.01 + 0.5) / 10, 0.01])
    assert LowUncertainty(reduce="max").sentence_scores(log_p, mask).tolist() == pytest.approx([0.5, 0.01])
    mnlp = LowUncertainty(reduce="mnlp").sentence_scores(log_p, mask)
    assert mnlp.tolist() == pytest.approx([1 - (0.99**9 * 0.5) ** 0.1, 0.01], rel=1e-5)  # padding ignored
    entropy = LowUncertainty(kind="entropy", reduce="max").sentence_scores(log_p, mask)
    assert entropy[0].item() == pytest.approx(-(0.5 * math.log(0.5) + 0.3 * math.log(0.3) + 0.2 * math.log(0.2)))
    empty = LowUncertainty(reduce="max").sentence_scores(log_p[:1], torch.zeros(1, 10, dtype=torch.bool))
    assert empty.tolist() == [0.0]
    assert (LowUncertainty().column, LowUncertainty(reduce="max").column, LowUncertainty(reduce="mnlp").column) == (
        "stop/uncertainty",
        "stop/uncertainty_max",
        "stop/uncertainty_mnlp",
    )
    with pytest.raises(ValueError, match="reduce"):
        LowUncertainty(reduce="sentence")
    with pytest.raises(ValueError, match="kind: reduce='mnlp'"):
        LowUncertainty(kind="entropy", reduce="mnlp")


class _FixedTagger(nn.Module):
    """``pool_logits`` of a tagger: the batch holds pool indices, each gets the log-probabilities of one sentence."""

    def __init__(self, log_p, mask):
        super().__init__()
        self.log_p, self.mask = log_p, mask

    def pool_logits(self, batch):
        return self.log_p[batch], self.mask[batch]


class _Pool:
    def __init__(self, n):
        self.pool_indices = list(range(n))

    def pool_dataloader(self, indices):
        return [torch.tensor(indices[i : i + 1]) for i in range(len(indices))]  # one sentence per batch


def test_measure_per_sentence_on_a_tagger_and_where_each_stops():
    log_p, mask = _tagger_output()
    model, pool = _FixedTagger(log_p, mask), _Pool(2)
    rows = [{"labelled": 10}, {"labelled": 20}]
    for reduce, expected in [("token", (12 * 0.01 + 0.5) / 13), ("max", 0.255), ("mnlp", None)]:
        criterion = LowUncertainty(0.05, reduce=reduce, sample=None)
        measured = criterion.measure(None, model, pool)
        assert list(measured) == [criterion.column] and criterion.state_dict() == {"rounds": 1}
        value = measured[criterion.column]
        mean = LowUncertainty(reduce=reduce).sentence_scores(log_p, mask).mean().item()
        assert value == pytest.approx(expected if expected is not None else mean, abs=1e-6)
        rows[0][criterion.column] = 0.3
        rows[1][criterion.column] = value
    criteria = [LowUncertainty(0.05), LowUncertainty(0.05, reduce="max"), LowUncertainty(0.05, reduce="mnlp")]
    # the token mean says "certain" while one sentence still has a word at p = 0.5; the per-sentence max does not;
    # MNLP (0.075 and 0.01: a geometric mean over the words) is length-normalised, so diluted as well
    assert rows[1]["stop/uncertainty_mnlp"] == pytest.approx((1 - (0.99**9 * 0.5) ** 0.1 + 0.01) / 2, rel=1e-4)
    assert list(where_stops(criteria, rows).values()) == [1, None, 1]


def test_sentence_level_uncertainty_in_a_tiny_tagger_campaign(tmp_path):
    from trinity_lightning.active.ner import ConllDataModule
    from trinity_lightning.models.tagger import Tagger

    from .test_tagger import _toy_sentences, _write_conll

    sents = _toy_sentences(80)
    for name, part in (("train", sents[:60]), ("dev", sents[60:70]), ("test", sents[70:])):
        _write_conll(tmp_path / f"{name}.txt", part)
    dm = ConllDataModule(
        str(tmp_path / "train.txt"), str(tmp_path / "dev.txt"), str(tmp_path / "test.txt"), initial_labelled=6
    )
    torch.manual_seed(0)
    tagger = Tagger(net_kwargs={"word_channels": [16], "hidden": 16, "char_channels": 8, "word_dim": 8})
    criteria = [LowUncertainty(0.0, sample=30, reduce=r) for r in ("token", "max", "mnlp")]
    al = ActiveLearning("mnlp", query_size=40, budget=120, unit="tokens", stopping=criteria)
    _trainer(tmp_path, al, enable_checkpointing=False).fit(tagger, datamodule=dm)
    assert al.finished and len(al.curve) >= 2
    for row in al.curve:
        token, most, mnlp = row["stop/uncertainty"], row["stop/uncertainty_max"], row["stop/uncertainty_mnlp"]
        assert 0.0 <= token <= most < 1.0 and 0.0 <= mnlp <= most  # a sentence's max bounds its mean and MNLP
