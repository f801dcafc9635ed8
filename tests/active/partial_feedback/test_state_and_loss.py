"""PartialLabels (answers, contradictions, atomic save/resume) and partial_label_loss (values, gradients)."""

from __future__ import annotations

import pytest
import torch

from trinity_lightning.active.partial_feedback import PartialLabelLoss, PartialLabels, partial_label_loss
from trinity_lightning.data import DataFormatError

ANIMAL = torch.tensor([True, True, False, False])
CAT = torch.tensor([True, False, False, False])


def test_answers_narrow_candidates_and_count_every_question():
    state = PartialLabels(3, 4)
    state.answer([0, 1], torch.stack([ANIMAL, ANIMAL]), [True, False], question_ids=[5, 5])
    assert state.candidates[0].tolist() == [True, True, False, False]
    assert state.candidates[1].tolist() == [False, False, True, True]
    state.answer([0], CAT[None], [False])  # "no" answers count too
    assert state.fully_labelled.tolist() == [True, False, False]
    assert state.labels().tolist() == [1, -1, -1]
    assert state.informative.tolist() == [True, True, False]
    assert state.num_questions == 3 and state.asked.tolist() == [2, 1, 0]
    ex, q, a = state.history()
    assert ex.tolist() == [0, 1, 0] and q.tolist() == [5, 5, -1] and a.tolist() == [True, False, False]


def test_repeated_example_in_one_batch_and_contradiction():
    state = PartialLabels(2, 4)
    state.answer([0, 0], torch.stack([ANIMAL, CAT]), [True, False])
    assert state.candidates[0].tolist() == [False, True, False, False]
    before = state.candidates.clone()
    with pytest.raises(ValueError, match=r"contradict earlier answers for examples \[0\]"):
        state.answer([0, 1], torch.stack([CAT, CAT]), [True, True])
    assert state.candidates.equal(before) and state.num_questions == 2  # nothing applied


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"indices": [0], "question_masks": torch.ones(1, 3, dtype=torch.bool), "answers": [True]}, "question_masks"),
        ({"indices": [0, 1], "question_masks": torch.ones(2, 4, dtype=torch.bool), "answers": [True]}, "answers"),
        ({"indices": [7], "question_masks": torch.ones(1, 4, dtype=torch.bool), "answers": [True]}, "indices"),
    ],
)
def test_bad_answers(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PartialLabels(2, 4).answer(**kwargs)


def test_save_load_round_trip_is_atomic(tmp_path):
    state = PartialLabels(50, 13)
    g = torch.Generator().manual_seed(0)
    truth = torch.randint(0, 13, (50,), generator=g)
    for _ in range(5):
        idx = torch.randint(0, 50, (20,), generator=g)
        masks = torch.rand(20, 13, generator=g) < 0.5
        state.answer(idx, masks, masks[torch.arange(20), truth[idx]], torch.arange(20))
    path = tmp_path / "partial.npz"
    state.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["partial.npz"]  # no temp file left behind
    loaded = PartialLabels.load(path)
    assert loaded.candidates.equal(state.candidates) and loaded.asked.equal(state.asked)
    for a, b in zip(loaded.history(), state.history()):
        assert a.equal(b)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataFormatError, match=r"junk\.npz"):
        PartialLabels.load(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="do not fit"):
        PartialLabels(3, 13).load_state_dict(state.state_dict())


def test_loss_values():
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5], [0.3, 0.2, 0.1, 0.0], [1.0, 2.0, 3.0, 4.0]])
    cands = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 1]], dtype=torch.bool)
    p = logits.softmax(dim=1)
    expected = torch.stack([-(p[0, 0] + p[0, 1]).log(), torch.tensor(0.0), -p[2, 3].log()])
    got = partial_label_loss(logits, cands, reduction="none")
    torch.testing.assert_close(got, expected)
    # one candidate = cross-entropy; mean is over informative rows only
    torch.testing.assert_close(got[2], torch.nn.functional.cross_entropy(logits[2:], torch.tensor([3])))
    torch.testing.assert_close(partial_label_loss(logits, cands), (expected[0] + expected[2]) / 2)
    torch.testing.assert_close(partial_label_loss(logits, cands, "sum"), expected.sum())
    assert float(partial_label_loss(logits, torch.ones_like(cands))) == 0.0
    torch.testing.assert_close(PartialLabelLoss()(logits, cands.int()), partial_label_loss(logits, cands))


def test_loss_is_stable_and_gradients_are_right():
    logits = torch.tensor([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 0.0], [5.0, 1.0, 2.0]], requires_grad=True)
    cands = torch.tensor([[0, 1, 1], [1, 1, 1], [0, 0, 0]], dtype=torch.bool)  # row 2: no candidate -> ignored
    loss = partial_label_loss(logits, cands, reduction="sum")
    assert torch.isfinite(loss) and float(loss) == pytest.approx(1000.0, rel=1e-6)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad[1:].abs().sum() == 0  # uninformative rows get no gradient
    # analytic gradient: softmax(all) - softmax(restricted to candidates)
    x = torch.randn(6, 5, dtype=torch.double, requires_grad=True)
    c = torch.rand(6, 5) < 0.5
    c[:, 0] = True
    c[0] = True
    partial_label_loss(x, c, reduction="sum").backward()
    restricted = x.detach().masked_fill(~c, float("-inf")).softmax(1)
    expected = x.detach().softmax(1) - restricted
    expected[0] = 0
    torch.testing.assert_close(x.grad, expected)
    assert torch.autograd.gradcheck(lambda t: partial_label_loss(t, c), (x.detach().requires_grad_(),))


def test_loss_bad_input():
    with pytest.raises(ValueError, match="reduction"):
        partial_label_loss(torch.zeros(2, 3), torch.ones(2, 3), reduction="avg")
    with pytest.raises(ValueError, match="candidates"):
        partial_label_loss(torch.zeros(2, 3), torch.ones(2, 4))
    with pytest.raises(ValueError, match="logits"):
        partial_label_loss(torch.zeros(3), torch.ones(3))
