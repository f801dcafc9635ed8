"""ActiveLab relabelling: cleanlab parity, the score's parts, the heuristic and the campaign in a LightningModule."""

from __future__ import annotations

import math
import warnings

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch import nn

from trinity_lightning.active import ActiveLearningDataModule, get_heuristic
from trinity_lightning.active.relabel import (
    ActiveLab,
    ActiveRelabelling,
    CrowdOracle,
    activelab_scores,
    activelab_select,
    best_temperature,
    crowdlab_consensus,
    item_consensus,
    majority_vote,
)
from trinity_lightning.data import ArrayDataset


def _crowd(seed: int, n: int = 30, m: int = 4, k: int = 3, single: bool = False):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    labels = np.full((n, m), np.nan)
    for i in range(n):
        who = [rng.integers(m)] if single else rng.choice(m, size=rng.integers(1, m + 1), replace=False)
        for j in who:
            labels[i, j] = truth[i] if rng.random() < 0.7 else rng.integers(0, k)
    for j in range(m):  # cleanlab refuses an annotator without labels
        if np.isnan(labels[:, j]).all():
            labels[j, :] = np.nan
            labels[j, j] = truth[j]
    return labels, rng.dirichlet(np.ones(k), n), rng.dirichlet(np.ones(k), 9)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 9, 11])
@pytest.mark.parametrize("single", [False, True])
def test_scores_equal_cleanlab(seed, single):
    multiannotator = pytest.importorskip("cleanlab.multiannotator", reason="cleanlab (test-only) is not installed")
    labels, probs, unlabelled = _crowd(seed, single=single)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected, expected_new = multiannotator.get_active_learning_scores(labels, probs.copy(), unlabelled.copy())
    scores, new = activelab_scores(torch.tensor(labels), torch.tensor(probs), torch.tensor(unlabelled), compat=True)
    np.testing.assert_allclose(scores.numpy(), expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(new.numpy(), expected_new, atol=1e-6, rtol=0)


def test_unlabelled_only_scores_are_the_confidence_averaged_with_chance():
    probs = torch.tensor([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]])
    scores, new = activelab_scores(None, None, probs)
    assert scores.numel() == 0
    assert new.tolist() == pytest.approx([(0.5 + 0.5) / 2, (0.9 + 0.5) / 2, (0.8 + 0.5) / 2])


def test_single_label_items_use_the_model_probability_of_their_label():
    labels = torch.tensor([[0, -1], [-1, 1]])
    probs = torch.tensor([[0.8, 0.2], [0.7, 0.3]])
    scores, _ = activelab_scores(labels, probs)
    # weights: one annotator (1) + model (1) on the label's probability, mean annotator weight (1) on 1/K
    assert scores.tolist() == pytest.approx([(0.8 * 2 + 0.5) / 3, (0.3 * 2 + 0.5) / 3])


def test_compat_reproduces_cleanlabs_label_counts_in_the_temperature_search():
    counts = torch.tensor([[0.0, 2.0, 0.0], [1.0, 1.0, 1.0]])
    probs = torch.tensor([[0.05, 0.9, 0.05], [0.3, 0.4, 0.3]], dtype=torch.float64)
    # an item labelled [1, 1] counts as [2, 0, 0] in cleanlab: the model then looks wrong and is flattened
    assert best_temperature(counts, probs, compat=True) > best_temperature(counts, probs)


def test_disagreement_and_weak_annotators_are_relabelled_first():
    # items 0 and 1 agree twice; item 2 has a split vote; item 3 one label from the annotator who disagrees most
    labels = torch.tensor([[0, 0, -1], [1, 1, 1], [0, 1, -1], [-1, -1, 1], [1, 1, 0]])
    probs = torch.full((5, 2), 0.5, dtype=torch.float64)
    scores, new = activelab_scores(labels, probs, torch.full((2, 2), 0.5))
    assert int(scores.argmin()) == 2
    assert scores[0] > scores[2] and scores[1] > scores[2]
    again, first = activelab_select(scores, new, 3)
    assert again[0] == 2 and len(again) + len(first) == 3
    # a blocked item is never chosen
    again, _ = activelab_select(scores, new, 2, torch.tensor([True, True, False, True, True]))
    assert 2 not in again


def test_majority_vote_tie_breaks_and_consensus():
    items, workers, labels = torch.tensor([0, 0, 1, 1, 2]), torch.tensor([0, 1, 0, 1, 0]), torch.tensor([0, 1, 1, 1, 2])
    # item 0 is tied: the model prefers class 1
    assert majority_vote(items, workers, labels, 3, 3, torch.tensor([[0.1, 0.6, 0.3]] * 3)).tolist() == [1, 1, 2]
    # without a model: the rarer class overall (class 0 has 1 vote, class 1 has 3)
    assert majority_vote(items, workers, labels, 3, 3).tolist()[0] == 0
    out = crowdlab_consensus(items, workers, labels, torch.full((3, 3), 1 / 3, dtype=torch.float64))
    assert out.consensus.tolist()[1:] == [1, 2] and out.annotator_weight.shape == (2,)
    assert item_consensus([("a", 1), ("b", 2), ("c", 2)]) == 2


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="probs, probs_unlabelled"):
        activelab_scores()
    with pytest.raises(ValueError, match="labels: required"):
        activelab_scores(None, torch.ones(2, 2) / 2)
    with pytest.raises(ValueError, match="probs: 3 rows for 2"):
        activelab_scores(torch.tensor([[0, 1], [1, 1]]), torch.ones(3, 2) / 2)
    with pytest.raises(ValueError, match="class 4 is out of range"):
        activelab_scores(torch.tensor([[0, 4]]), torch.ones(1, 2) / 2)
    with pytest.raises(ValueError, match="non-negative"):
        activelab_scores(torch.tensor([[0, 1]]), torch.tensor([[math.nan, 0.5]]))
    with pytest.raises(ValueError, match=r"k: expected 1\.\.2"):
        activelab_select(torch.tensor([0.5]), torch.tensor([0.4]), 3)
    with pytest.raises(ValueError, match="budget, unit"):
        ActiveRelabelling(unit="tokens")
    with pytest.raises(TypeError, match="needs an ActiveLab"):
        ActiveRelabelling(strategy="entropy")
    with pytest.raises(ValueError, match="no held-back label left"):
        CrowdOracle({1: []}).query(1, [1])


def test_heuristic_is_registered_and_ranks_the_pool_by_confidence():
    heuristic = get_heuristic("activelab")
    assert isinstance(heuristic, ActiveLab)
    logits = torch.tensor([[4.0, 0.0], [0.0, 0.1], [2.0, 0.0]])
    assert heuristic.select({"logits": logits}, 2) == [1, 2]


# ------------------------------------------------------------------- a campaign in a user's LightningModule
class Net(pl.LightningModule):
    """What a user writes: a classifier with training and validation steps."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val_acc", (self(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.05)


def _crowd_task(n: int = 60):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = torch.randn(n, 2, generator=g) + 2.5 * y[:, None]
    rng = np.random.default_rng(0)
    # three workers per item: "good" is right 95% of the time, "noisy" 60%, "spam" at random
    held = {}
    for i in range(n):
        answers = []
        for worker, right in (("good", 0.95), ("noisy", 0.6), ("spam", 0.5)):
            answers.append((worker, int(y[i]) if rng.random() < right else 1 - int(y[i])))
        rng.shuffle(answers)
        held[i] = [tuple(a) for a in answers]
    return ArrayDataset(x, y), held


def test_campaign_relabels_with_workers_inside_trainer_fit(tmp_path):
    data, held = _crowd_task()
    oracle = CrowdOracle(held)
    initial = list(range(10))
    oracle.query(0, initial)
    first = oracle.collect(0)
    annotations = {i: [(w, lab)] for i, lab, w in zip(first.indices, first.labels, first.workers)}
    dm = ActiveLearningDataModule(data, val=data, num_classes=2, batch_size=16, initial_labelled=0)
    dm.setup("fit")
    dm.label(initial, [annotations[i][0][1] for i in initial])
    # 45 = 4 rounds of 10 and a last round of 5 (the labels left in the budget)
    campaign = ActiveRelabelling(query_size=10, budget=45, annotations=annotations, max_labels=3, oracle=oracle)
    trainer = pl.Trainer(
        max_epochs=-1,
        callbacks=[campaign],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(Net(), datamodule=dm)
    assert campaign.labels_spent == 45
    assert 0 < campaign.relabels < 45  # both kinds of request were made
    assert dm.n_labelled == 10 + 45 - campaign.relabels
    spent = sum(len(v) for v in campaign.annotations.values())
    assert spent == 10 + 45
    for index, given in campaign.annotations.items():
        workers = [w for w, _ in given]
        assert len(set(workers)) == len(workers) <= 3  # each label from a new worker
        assert dm.annotations.get(index, item_consensus(given)) == item_consensus(given)
    assert campaign.curve[-1]["labels_spent"] == 45 and "relabels" in campaign.curve[-1]
    state = campaign.state_dict()["relabel"]
    restored = ActiveRelabelling(query_size=10, budget=45, oracle=CrowdOracle(held))
    restored.load_state_dict(campaign.state_dict())
    assert restored.annotations == campaign.annotations and state["labels_spent"] == 45
    assert restored.oracle.revealed == oracle.revealed


def _campaign_fit(tmp_path, held, oracle, annotations, budget, labelled_initial=True):
    data, _ = _crowd_task()
    dm = ActiveLearningDataModule(
        data, val=data, num_classes=2, batch_size=16, initial_labelled=0, labels_path=str(tmp_path / "labels.json")
    )
    dm.setup("fit")
    if labelled_initial:
        dm.label(sorted(annotations), [annotations[i][0][1] for i in sorted(annotations)])
    campaign = ActiveRelabelling(query_size=10, budget=budget, annotations=annotations, max_labels=3, oracle=oracle)
    trainer = pl.Trainer(
        max_epochs=-1,
        callbacks=[campaign],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(Net(), datamodule=dm)
    return campaign, dm


def test_every_workers_answer_is_kept_on_disk_and_read_back_by_a_fresh_fit(tmp_path):
    import json

    _, held = _crowd_task()
    oracle = CrowdOracle(held)
    oracle.query(0, list(range(10)))
    first = oracle.collect(0)
    annotations = {i: [(w, lab)] for i, lab, w in zip(first.indices, first.labels, first.workers)}
    campaign, dm = _campaign_fit(tmp_path, held, oracle, annotations, budget=20)
    path = ActiveRelabelling.annotations_path(dm)
    assert path == tmp_path / "labels.json.annotations.json"
    on_disk = {int(k): [tuple(a) for a in v] for k, v in json.loads(path.read_text()).items()}
    assert on_disk == campaign.annotations and sum(len(v) for v in on_disk.values()) == 10 + 20
    # a new process without a checkpoint: the labels file and the annotations file carry the campaign on
    again, _ = _campaign_fit(tmp_path, held, CrowdOracle(held), {}, budget=10, labelled_initial=False)
    for index, given in on_disk.items():
        assert set(given) <= set(again.annotations[index])  # nothing a worker answered was lost


def test_an_out_of_range_label_is_refused_before_anything_changes(tmp_path):
    from trinity_lightning.rounds.oracle import Answers

    data, held = _crowd_task()
    dm = ActiveLearningDataModule(data, val=data, num_classes=2, batch_size=16, initial_labelled=0)
    dm.setup("fit")
    dm.label([0], [1])

    class BadOracle(CrowdOracle):
        def collect(self, round):
            return Answers(indices=[1, 0], labels=[0, 7], workers=["w1", "w2"])

    campaign = ActiveRelabelling(query_size=2, budget=10, annotations={0: [("w0", 1)]}, oracle=BadOracle(held))
    before = {k: list(v) for k, v in campaign.annotations.items()}
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False)
    with pytest.raises(ValueError, match=r"labels: label 7 of index 0 \(worker 'w2'\) is out of range \[0, 2\)"):
        campaign._collect(trainer, Net(), dm, 1)
    assert campaign.annotations == before and campaign.labels_spent == 0 and dm.n_labelled == 1
