"""M-MSR and KOS: numbers and behaviour that need no crowd-kit (crowd-kit agreement: crowdkit_port/)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from trinity_lightning.crowd import KOS, MMSR, AnnotationTable, MajorityVote
from trinity_lightning.crowd.mmsr import _sign_vector, _trimmed_means, co_labelling
from trinity_lightning.crowd.simulate import hammer_spammer_confusions, simulate_annotations


def _adversarial(seed: int = 0, K: int = 2):
    """300 items, 12 workers of mixed accuracy; workers 0 and 1 always give a wrong label."""
    g = torch.Generator().manual_seed(seed)
    truth = torch.randint(0, K, (300,), generator=g)
    confusions = hammer_spammer_confusions(12, K, hammer_fraction=0.6, seed=seed)
    flip = torch.roll(torch.eye(K, dtype=confusions.dtype), 1, dims=1)  # true k -> label k + 1: always wrong
    confusions[:2] = flip
    return simulate_annotations(truth, confusions, 6, seed=seed), truth


def test_trimmed_mean_drops_f_values_each_side_relative_to_the_current_value():
    ratios = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0], [1.0, 2.0, 3.0, 4.0, 5.0], [0.0, 9.0, 9.0, 9.0, 9.0]])
    observed = torch.tensor([[True] * 5, [True] * 5, [True, False, False, False, False]])
    a = torch.tensor([3.0, 0.5, 0.0])
    # row 0: one value each side of 3 dropped -> mean(2, 3, 4); row 1: nothing is below 0.5, so only values
    # below are dropped (none) and one from the top -> mean(1..4); row 2: a single 0 left -> 1/sqrt(T)
    out = _trimmed_means(ratios, observed, a, F=1, n_tasks=16)
    assert out.tolist() == [3.0, 2.5, 0.25]
    assert _trimmed_means(ratios, observed, a, F=-1, n_tasks=16).tolist() == [5.0, 5.0, 0.25]  # F=-1: the largest
    # a single value below the current one with F = 1: dropped, nothing left, the value stays
    assert _trimmed_means(ratios[2:], observed[2:], torch.tensor([7.0]), F=1, n_tasks=16).tolist() == [7.0]
    nothing = torch.zeros_like(observed)
    assert _trimmed_means(ratios, nothing, a, F=1, n_tasks=16).tolist() == a.tolist()  # no value: keep a


def test_co_labelling_equals_the_dense_count():
    table, _ = _adversarial(1, K=3)
    common, same = co_labelling(table)
    dense = torch.zeros(table.num_workers, table.num_items, dtype=torch.long)
    dense[table.workers, table.items] = table.labels + 1
    shared = (dense[:, None, :] > 0) & (dense[None, :, :] > 0)
    expected_common = shared.sum(-1).double().fill_diagonal_(0)
    expected_same = (shared & (dense[:, None, :] == dense[None, :, :])).sum(-1).double().fill_diagonal_(0)
    assert torch.equal(common, expected_common) and torch.equal(same, expected_same)


def test_sign_vector_two_colours_a_clean_sign_pattern():
    s = torch.tensor([0.8, 0.6, -0.7, 0.5, -0.4], dtype=torch.float64)
    C = torch.outer(s, s).fill_diagonal_(-1.0)
    assert _sign_vector(C).tolist() == [1.0, 1.0, -1.0, 1.0, -1.0]


def test_sign_vector_sparse_lanczos_equals_dense_eigh():
    g = torch.Generator().manual_seed(0)
    s = torch.rand(40, generator=g, dtype=torch.float64) * 0.8 + 0.1
    s[:7] *= -1
    C = torch.outer(s, s) + 0.02 * torch.randn(40, 40, generator=g, dtype=torch.float64)
    C = ((C + C.T) / 2).fill_diagonal_(-1.0)  # ~600 positive pairs: ~640 nodes, above dense_max
    dense, sparse = _sign_vector(C, dense_max=10_000), _sign_vector(C, dense_max=10)
    assert torch.equal(dense, sparse) and torch.equal(dense, torch.sign(s))


def test_mmsr_finds_the_adversaries_and_beats_majority_vote():
    table, truth = _adversarial()
    m = MMSR(vote="log_odds").fit(table)
    mv = MajorityVote(tie_break="smallest").fit(table)
    assert (m.skills_[:2] < 0).all() and set(m.skills_.argsort()[:2].tolist()) == {0, 1}
    assert (m.labels_ == truth).double().mean() > 0.99 > 0.7 > (mv.labels_ == truth).double().mean()
    # crowd-kit's rule takes the largest share of the total skill, the smallest summed skill where it is negative
    ck = MMSR().fit(table)
    assert torch.equal(ck.skills_, m.skills_) and 0.6 < (ck.labels_ == truth).double().mean() < 0.65
    assert torch.equal(ck.probas_.argmax(1), ck.labels_)
    assert torch.allclose(m.probas_.sum(1), torch.ones(table.num_items, dtype=torch.float64))
    assert torch.equal(m.probas_.argmax(1), m.labels_) and torch.equal(ck.scores_.argmax(1), ck.labels_)
    p, M = m.accuracy_, 2
    assert torch.allclose(m.skills_, torch.log(p * (M - 1) / (1 - p)))
    assert m.n_iter_ == len(m.loss_history_) and m.loss_history_[-1] < m.tol
    assert m.covariation_.shape == (12, 12) and m.worker_frame()["worker"].iloc[0] in (0, 1)


def test_mmsr_clips_accuracy_to_one_minus_one_over_root_t():
    frame = {"task": [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4], "worker": ["a", "b", "c"] * 4, "label": [0] * 6 + [1] * 6}
    m = MMSR().fit(frame)  # three workers who always agree: s = 1, clipped to 1 - 1/sqrt(4)
    assert torch.allclose(m.accuracy_, torch.full((3,), (1 - 1 / math.sqrt(4)) / 2 + 1 / 2, dtype=torch.float64))
    assert m.labels_.tolist() == [0, 0, 1, 1]


def test_mmsr_and_kos_arguments_name_themselves():
    with pytest.raises(ValueError, match="n_iter: expected a non-negative integer, got -1"):
        MMSR(n_iter=-1)
    with pytest.raises(ValueError, match="tol: expected a non-negative number, got -1"):
        MMSR(tol=-1)
    with pytest.raises(ValueError, match="vote: expected 'crowdkit' or 'log_odds', got 'raw'"):
        MMSR(vote="raw")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_iter: expected a non-negative integer, got -2"):
        KOS(n_iter=-2)


def test_kos_labels_do_not_depend_on_which_class_is_plus_one():
    table, truth = _adversarial(2)
    k = KOS().fit(table)
    flipped = AnnotationTable.from_tensors(table.items, table.workers, 1 - table.labels, num_classes=2)
    k2 = KOS().fit(flipped)
    assert torch.equal(k2.labels_, 1 - k.labels_) and torch.equal(k2.scores_, -k.scores_)
    assert (k.labels_ == truth).double().mean() > 0.8
    assert torch.equal(k.probas_.argmax(1), k.labels_) and k.n_iter_ <= 100


def test_kos_tie_is_half_and_half_and_class_zero():
    # one item each worker: after one iteration every reliability is 0 (no other item to learn from)
    k = KOS(n_iter=1).fit({"task": [1, 1], "worker": ["a", "b"], "label": ["no", "yes"]})
    assert k.scores_.tolist() == [0.0] and k.probas_.tolist() == [[0.5, 0.5]] and k.labels_.tolist() == [0]
    with pytest.raises(ValueError, match=r"annotations: KOS is for binary labels \(2 classes\); the table has 3"):
        KOS().fit({"task": [1, 2, 3], "worker": ["a"] * 3, "label": ["x", "y", "z"]})


def test_mmsr_zero_skill_breakdown_is_an_error_naming_the_annotations():
    # a and b always agree, c agrees with each exactly half the time: c's centred skill is 0, the ratios divide by 0
    frame = {"task": [t for t in range(4) for _ in range(3)], "worker": ["a", "b", "c"] * 4,
             "label": [0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0]}  # fmt: skip
    with pytest.raises(ValueError, match="annotations: M-MSR's rank-one iteration divided by a zero skill"):
        MMSR().fit(frame)


def test_empty_input_gives_empty_results_like_crowdkit():
    empty = pd.DataFrame({"task": [], "worker": [], "label": []})
    m = MMSR().fit(empty)
    assert m.empty_ and m.skills_.shape == (0,) and m.scores_.shape == (0, 0) and len(m.to_frame()) == 0
    k = KOS().fit(empty)
    assert k.empty_ and k.scores_.shape == (0,) and k.labels_.shape == (0,)
