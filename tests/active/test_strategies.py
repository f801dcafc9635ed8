import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from trinity_lightning.active import BALD, MNLP, STRATEGIES, Entropy, LeastConfidence, Margin, get_strategy
from trinity_lightning.active.scoring import TopK, find_mc_split, mc_logits, score_pool, select_by_budget
from trinity_lightning.models import SmallCNN


def _logits(probs):
    return torch.tensor(probs).log()


def test_registry_names_and_errors():
    from trinity_lightning.active import HEURISTICS, get_heuristic, register_strategy

    assert {"random", "least_confidence", "margin", "entropy", "mnlp", "bald"} <= set(STRATEGIES)
    assert STRATEGIES is HEURISTICS  # the old name is an alias
    with pytest.raises(
        ValueError,
        match=r"heuristic: 'nope' is not a registered query heuristic. Available names: \['activelab', 'badge'",
    ):
        get_heuristic("nope")
    with pytest.raises(ValueError, match="strategy: 'nope'"):
        get_strategy("nope")  # the old entry point names the argument it was given as
    with pytest.raises(ValueError, match="n_samples"):
        get_strategy("bald", n_samples=1)
    with pytest.raises(ValueError, match=r"does not take \['temperature'\]"):
        get_heuristic("entropy", temperature=2.0)  # unknown kwargs are refused, not ignored
    with pytest.warns(DeprecationWarning, match="register_heuristic"):
        register_strategy("entropy")(Entropy)
    with pytest.raises(ValueError, match="reduction"):
        Entropy(reduction="median")


def test_classification_orderings():
    probs = [[0.98, 0.01, 0.01], [0.5, 0.45, 0.05], [0.34, 0.33, 0.33]]
    x = _logits(probs)
    assert LeastConfidence().score(x).argsort().tolist() == [0, 1, 2]
    assert Entropy().score(x).argsort().tolist() == [0, 1, 2]
    assert Margin().score(x).argmax().item() == 2
    assert torch.allclose(LeastConfidence().score(x), torch.tensor([0.02, 0.5, 0.66]), atol=1e-5)
    assert torch.allclose(MNLP().score(x), -torch.tensor([0.98, 0.5, 0.34]).log(), atol=1e-5)


def test_sequence_scores_respect_mask_and_length():
    # sentence 0: 2 tokens at p=0.9; sentence 1: 6 tokens at p=0.95 (padding after)
    c = torch.full((2, 6, 2), 0.0)
    c[0, :2] = torch.tensor([0.9, 0.1]).log()
    c[1, :] = torch.tensor([0.95, 0.05]).log()
    c[0, 2:] = torch.tensor([0.5, 0.5]).log()  # padding: must be ignored
    mask = torch.tensor([[True, True, False, False, False, False], [True] * 6])
    lc = LeastConfidence().score(c, mask)
    mnlp = MNLP().score(c, mask)
    assert math.isclose(lc[0].item(), 1 - 0.81, abs_tol=1e-5)
    assert math.isclose(lc[1].item(), 1 - 0.95**6, abs_tol=1e-5)
    assert lc[1] > lc[0]  # LC prefers the long sentence
    assert mnlp[0] > mnlp[1]  # MNLP normalizes by length and prefers the uncertain one
    assert math.isclose(mnlp[0].item(), -math.log(0.9), abs_tol=1e-5)
    ent = Entropy(reduction="sum").score(c, mask)
    h = lambda p: -(p * math.log(p) + (1 - p) * math.log(1 - p))  # noqa: E731
    assert math.isclose(ent[0].item(), 2 * h(0.9), abs_tol=1e-5)


def test_bald_mutual_information_and_disagreement():
    agree = _logits([[0.5, 0.5]]).expand(4, 1, 2)  # uncertain but the passes agree: MI = 0
    disagree = _logits([[0.99, 0.01], [0.01, 0.99]]).repeat(2, 1).unsqueeze(1)
    s = BALD(n_samples=4).score(torch.cat([agree, disagree], 1))
    assert abs(s[0].item()) < 1e-6 and math.isclose(s[1].item(), math.log(2) - h2(0.99), abs_tol=1e-4)
    # token sequences: 3 passes of 2 sentences x 2 tokens; sentence 0 decoded identically, sentence 1 differs
    seq = torch.zeros(3, 2, 2, 2)
    seq[..., 0] = 1.0
    seq[1, 1, 1] = torch.tensor([0.0, 1.0])
    d = BALD(n_samples=3, mode="disagreement").score(seq, torch.ones(2, 2, dtype=torch.bool))
    assert d.tolist() == pytest.approx([0.0, 1 / 3])


def h2(p):
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


@pytest.mark.parametrize("name", ["least_confidence", "margin", "entropy", "mnlp"])
def test_shape_errors(name):
    s = get_strategy(name)
    with pytest.raises(ValueError, match="logits"):
        s.score(torch.zeros(3))
    with pytest.raises(ValueError, match="mask"):
        s.score(torch.zeros(2, 3, 4), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask"):
        s.score(torch.zeros(2, 4), torch.ones(2, 4, dtype=torch.bool))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(-20, 20).map(float), min_size=1, max_size=40), st.integers(1, 7), st.integers(1, 40))
def test_streaming_topk_equals_full_sort(values, batch, k):
    scores = torch.tensor(values)
    idx = torch.arange(100, 100 + len(values))
    top = TopK(k)
    for start in range(0, len(values), batch):
        top.update(scores[start : start + batch], idx[start : start + batch])
    order = sorted(range(len(values)), key=lambda i: (-values[i], i))[:k]
    assert top.result().indices == [100 + i for i in order]


def test_score_pool_streams_and_restores_mode():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.5), nn.Linear(8, 4)).train()
    x = torch.randn(50, 3)
    loader = [x[i : i + 8] for i in range(0, 50, 8)]
    sel = score_pool(net, loader, Entropy(), 5, list(range(50)))
    with torch.no_grad():
        full = Entropy().score(net.eval()(x))
    assert sel.indices == full.topk(5).indices.tolist()
    net.train()
    score_pool(net, loader, Entropy(), 5, list(range(50)))
    assert net.training
    with pytest.raises(ValueError, match="indices"):
        score_pool(net, loader, Entropy(), 5, list(range(10)))


def test_mc_split_runs_trunk_once_and_matches_replication():
    cnn = SmallCNN(1, 3, channels=(4,), image_size=8, dropout=0.5)
    calls = []
    cnn.features.register_forward_hook(lambda *a: calls.append(1))
    assert find_mc_split(cnn) is not None
    x = torch.randn(6, 1, 8, 8)
    cnn.eval()
    fast, _ = mc_logits(cnn, x, 5, seed=0)
    assert fast.shape == (5, 6, 3) and len(calls) == 1  # the deterministic trunk ran once for 5 samples
    assert not cnn.head[1].training  # dropout back in eval mode
    # the slow path with the same (consistent) masks: sample s drops the same features of every example
    with torch.no_grad():
        feats = cnn.head[:1](cnn.features(x))
        keep = (torch.rand((5, 1, feats.shape[1]), generator=torch.Generator().manual_seed(0)) >= 0.5) / 0.5
        slow = cnn.head[2](feats.unsqueeze(0) * keep)
    assert torch.allclose(fast, slow, atol=1e-6)


def test_bald_without_dropout_is_an_error():
    net = nn.Sequential(nn.Linear(3, 4))
    with pytest.raises(ValueError, match=r"strategy.*dropout"):
        score_pool(net, [torch.randn(4, 3)], BALD(n_samples=3), 2, [0, 1, 2, 3])


def test_rank_shards_merge_to_the_global_topk():
    from trinity_lightning.active.scoring import merge_selections

    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 20, (60,), generator=g).float()  # many ties
    indices = list(range(100, 160))
    parts = []
    for rank in range(3):  # the callback's sharding: candidates[rank::world]
        top = TopK(7)
        top.update(scores[rank::3], torch.tensor(indices[rank::3]))
        parts.append(top.result())
    full = TopK(7)
    full.update(scores, torch.tensor(indices))
    assert merge_selections(parts, 7) == full.result()


def test_select_by_budget_and_random_seeded():
    from trinity_lightning.active.scoring import Selection

    assert select_by_budget(Selection([1, 2, 3], [3.0, 2.0, 1.0]), [5, 5, 5], 12).indices == [1, 2, 3]
    assert select_by_budget(Selection([1, 2, 3], [3.0, 2.0, 1.0]), [5, 5, 5], 10).indices == [1, 2]
    assert select_by_budget(Selection([1], [3.0]), [50], 12).indices == [1]  # at least one
    r = get_strategy("random")
    r.begin(3)
    a = r.score(torch.zeros(5, 2))
    r.begin(3)
    assert torch.equal(a, r.score(torch.zeros(5, 2)))
