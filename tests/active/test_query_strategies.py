"""The richer heuristics (BatchBALD, EPIG, stochastic batches, coreset, BADGE, k-means, EGL, information density,
committees) and the engine that computes only the outputs a heuristic requires."""

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from trinity_lightning.active import (
    BADGE,
    BALD,
    EPIG,
    BatchBALD,
    Coreset,
    EmbeddingKMeans,
    ExpectedGradientLength,
    InformationDensity,
    KLDisagreement,
    StochasticBatch,
    VoteEntropy,
    get_heuristic,
)
from trinity_lightning.active.scoring import check_outputs, pool_outputs, score_pool, select_pool
from trinity_lightning.rounds import predict_pool


def _mc(s=6, n=25, c=3, seed=0):
    return torch.randn(s, n, c, generator=torch.Generator().manual_seed(seed)) * 2


def _joint_mi(probs, batch):
    """Exact I(y_batch; w) by enumerating every label configuration. probs: (S, N, C)."""
    s_count, _, c_count = probs.shape
    joint_h = 0.0
    for config in itertools.product(range(c_count), repeat=len(batch)):
        per_sample = torch.ones(s_count, dtype=torch.float64)
        for i, c in zip(batch, config):
            per_sample = per_sample * probs[:, i, c]
        p = float(per_sample.mean())
        joint_h -= p * math.log(p) if p > 0 else 0.0
    cond = float(-torch.xlogy(probs[:, batch], probs[:, batch]).sum(-1).mean(0).sum())
    return joint_h - cond


# ------------------------------------------------------------------------------------------------ BatchBALD
def test_batchbald_first_pick_is_bald_argmax_and_greedy_matches_brute_force():
    mc = _mc(s=5, n=12, c=3)
    probs = mc.softmax(-1).double()
    picks = BatchBALD(n_samples=5).select({"mc_logits": mc}, k=3)
    assert picks[0] == int(BALD(n_samples=5).score(mc).argmax())
    chosen: list[int] = []
    for _ in range(3):  # brute-force greedy on the exact joint mutual information
        gains = [(_joint_mi(probs, [*chosen, i]) if i not in chosen else -1.0) for i in range(12)]
        chosen.append(int(np.argmax(gains)))
    assert picks == chosen


def test_batchbald_avoids_duplicates_that_bald_takes():
    a = torch.tensor([[5.0, -5], [5, -5], [-5, 5], [-5, 5]])
    b = torch.tensor([[4.0, -4], [-4, 4], [4, -4], [-4, 4]])
    mc = torch.stack([a, a, a, b], 1)
    assert set(BALD(n_samples=4).score(mc).topk(2).indices.tolist()) <= {0, 1, 2}  # two copies
    assert BatchBALD(n_samples=4).select({"mc_logits": mc}, k=2) == [0, 3]


def test_batchbald_sampled_configurations_agree_with_exact_and_stay_bounded():
    mc = _mc(s=8, n=40, c=4, seed=1)
    exact = BatchBALD(n_samples=8, max_configurations=4**5).select({"mc_logits": mc}, k=5)
    sampled = BatchBALD(n_samples=8, max_configurations=256)
    sampled.begin(0)
    picks = sampled.select({"mc_logits": mc}, k=5)
    assert picks[:3] == exact[:3]  # exact while 4^2 = 16 <= 256 configurations, then sampled
    assert len(set(picks) & set(exact)) >= 4
    prefiltered = BatchBALD(n_samples=8, candidates=10).select({"mc_logits": mc}, k=5)
    top10 = set(BALD(n_samples=8).score(mc).topk(10).indices.tolist())
    assert set(prefiltered) <= top10


def test_batchbald_matches_baal():
    baal = pytest.importorskip("baal.active.heuristics")
    mc = _mc(s=10, n=60, c=3, seed=2)
    ours = BatchBALD(n_samples=10).select({"mc_logits": mc}, k=4)
    torch.manual_seed(0)
    probs = mc.softmax(-1).permute(1, 2, 0).double().numpy()  # (N, C, S)
    baal_scores = baal.BatchBALD(num_samples=4, num_draw=1000).compute_score(probs)
    theirs = set(np.flatnonzero(baal_scores != 0).tolist())  # baal marks the examples it picked (it picks k + 1)
    assert ours[0] in theirs  # both start from BALD's argmax
    assert len(set(ours) & theirs) >= 3  # baal samples its configurations even where 3^3 could be enumerated


def test_batchbald_errors():
    with pytest.raises(ValueError, match="n_samples"):
        BatchBALD(n_samples=1)
    with pytest.raises(ValueError, match="query_size: 5 examples asked but the pool holds only 3"):
        BatchBALD(n_samples=4).select({"mc_logits": _mc(4, 3)}, k=5)
    with pytest.raises(ValueError, match=r"mc_logits: batchbald supports classification \(S, N, C\)"):
        BatchBALD(n_samples=4).select({"mc_logits": torch.zeros(4, 3, 2, 2)}, k=1)


# ----------------------------------------------------------------------------------------------------- EPIG
def test_epig_equals_the_mutual_information_with_the_targets():
    mc = _mc(s=6, n=10, c=3, seed=3)
    probs = mc.softmax(-1).double()
    targets = probs[:, [7, 8]]
    scores = EPIG(n_samples=6).scores(probs, targets)
    for i in (0, 4):  # brute force: mean over targets of KL(p(y, y*) || p(y) p(y*))
        vals = []
        for t in range(2):
            joint = torch.einsum("sc,sd->cd", probs[:, i], targets[:, t]) / 6
            outer = joint.sum(1, keepdim=True) * joint.sum(0, keepdim=True)
            vals.append(float((joint * (joint / outer).log()).sum()))
        assert scores[i].item() == pytest.approx(sum(vals) / 2, abs=1e-7)


def test_epig_matches_baal():
    baal = pytest.importorskip("baal.active.heuristics")
    probs = _mc(s=6, n=20, c=3, seed=4).softmax(-1)
    ours = EPIG(n_samples=6).scores(probs, probs[:, :5])
    theirs = baal.EPIG().compute_score(probs.permute(1, 2, 0).numpy(), probs[:, :5].permute(1, 2, 0).numpy())
    assert np.allclose(ours.numpy(), theirs, atol=1e-5)


# -------------------------------------------------------------------------------------- stochastic batches
def test_stochastic_power_sampling_follows_the_scores():
    logits = torch.tensor([[0.0, 0.0], [0.0, 2.0], [0.0, 5.0]])  # entropies ~0.69, 0.38, 0.04
    entropy = get_heuristic("entropy").score(logits)
    s = StochasticBatch("entropy", mode="power", beta=1.0)
    s.begin(0)
    picks = torch.stack([s.score(logits) for _ in range(800)]).argmax(1)  # the generator runs on
    counts = torch.bincount(picks, minlength=3).float()
    assert torch.allclose(counts / 800, entropy / entropy.sum(), atol=0.06)
    sharp = StochasticBatch("entropy", mode="softmax", beta=1000.0)
    sharp.begin(1)
    assert sharp.score(logits).argmax().item() == 0  # beta -> inf: the plain top-1
    with pytest.raises(ValueError, match="mode"):
        StochasticBatch("entropy", mode="softrank")
    with pytest.raises(ValueError, match="per-example"):
        StochasticBatch("batchbald")
    assert get_heuristic("stochastic", heuristic="bald", n_samples=4).required_outputs() == {"mc_logits"}


# -------------------------------------------------------------------------------------------- diversity
def test_coreset_is_greedy_k_center():
    g = torch.Generator().manual_seed(5)
    x, lab = torch.randn(50, 3, generator=g), torch.randn(4, 3, generator=g)
    picks = Coreset().select({"embeddings": x}, 6, {"embeddings": lab})
    centers, chosen = lab.clone(), []
    for _ in range(6):
        d = torch.cdist(x, centers).amin(1)
        d[chosen] = -1
        chosen.append(int(d.argmax()))
        centers = torch.cat([centers, x[chosen[-1] : chosen[-1] + 1]])
    assert picks == chosen
    assert len(set(Coreset().select({"embeddings": x}, 6, None))) == 6  # nothing labelled yet


def test_badge_distances_equal_the_materialized_gradient_embeddings():
    g = torch.Generator().manual_seed(6)
    logits, h = torch.randn(30, 4, generator=g), torch.randn(30, 5, generator=g)
    p = logits.softmax(-1).double()
    a = p - nn.functional.one_hot(p.argmax(1), 4).double()
    grads = (a.unsqueeze(2) * h.double().unsqueeze(1)).flatten(1)  # (N, C*D)
    strategy = BADGE()
    strategy.begin(0)
    picks = strategy.select({"logits": logits, "embeddings": h}, 5)
    assert picks[0] == int(grads.norm(dim=1).argmax())
    # the same k-means++ draw on materialized embeddings
    gen = torch.Generator().manual_seed(0)
    chosen = [picks[0]]
    dist = ((grads - grads[picks[0]]) ** 2).sum(1)
    for _ in range(4):
        dist[chosen] = 0
        nxt = int(torch.multinomial((dist / dist.sum()).float(), 1, generator=gen))
        chosen.append(nxt)
        dist = torch.minimum(dist, ((grads - grads[nxt]) ** 2).sum(1))
    assert picks == chosen


def test_kmeans_takes_one_example_per_cluster():
    g = torch.Generator().manual_seed(7)
    centers = torch.tensor([[0.0, 0], [10, 0], [0, 10], [10, 10]])
    x = centers.repeat_interleave(10, 0) + 0.1 * torch.randn(40, 2, generator=g)
    strategy = EmbeddingKMeans()
    strategy.begin(0)
    assert sorted(i // 10 for i in strategy.select({"embeddings": x}, 4)) == [0, 1, 2, 3]


def test_information_density_weights_uncertainty_by_similarity():
    x = torch.tensor([[1.0, 0], [0.8, 0.6], [1.0, 0.05], [-1.0, 0]])
    logits = torch.zeros(4, 2)
    logits[2] = torch.tensor([3.0, 0.0])
    s = InformationDensity(beta=1.0)
    xn = nn.functional.normalize(x, dim=1)
    density = (xn @ xn.mean(0)).clamp_min(0)
    entropy = get_heuristic("entropy").score(logits)
    picks = s.select({"logits": logits, "embeddings": x}, 4)
    assert picks == torch.sort(entropy * density, descending=True, stable=True).indices.tolist()
    assert picks[-1] == 3  # the most uncertain example, but an outlier
    assert s.required_outputs() == {"logits", "embeddings"}


# ------------------------------------------------------------------------------------ per-example extras
def test_egl_equals_the_autograd_expected_gradient_norm():
    torch.manual_seed(0)
    layer = nn.Linear(5, 3)
    h = torch.randn(4, 5)
    logits = layer(h).detach()
    scores = ExpectedGradientLength().score_outputs({"logits": logits, "embeddings": h})
    for i in range(4):
        p = logits[i].softmax(-1)
        expected = 0.0
        for y in range(3):
            layer.zero_grad()
            nn.functional.cross_entropy(layer(h[i : i + 1]), torch.tensor([y])).backward()
            norm = torch.cat([layer.weight.grad.flatten(), layer.bias.grad]).norm()
            expected += float(p[y] * norm)
        assert scores[i].item() == pytest.approx(expected, rel=1e-5)


def test_committee_scores():
    mc = _mc(s=5, n=8, c=4, seed=8)
    assert torch.allclose(KLDisagreement(5).score(mc), BALD(5).score(mc), atol=1e-5)
    votes = VoteEntropy(5).score(mc)
    counts = nn.functional.one_hot(mc.argmax(-1), 4).float().mean(0)
    assert torch.allclose(votes, -torch.xlogy(counts, counts).sum(-1))
    tokens = torch.zeros(3, 1, 2, 2)
    tokens[0, 0, 0] = torch.tensor([5.0, 0.0])  # token 0: one vote of three for class 0; token 1: padding
    mask = torch.tensor([[True, False]])
    assert VoteEntropy(3).score(tokens, mask).item() == pytest.approx(0.0)  # ties argmax to 0: all agree


# ----------------------------------------------------------------------------------------------- the engine
class _Spy(nn.Module):
    """A classifier recording which outputs the engine asked for."""

    def __init__(self, with_hook: bool = True) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.3))
        self.out = nn.Linear(8, 3)
        self.calls: dict[str, int] = {"forward": 0, "embeddings": 0}
        if with_hook:
            self.pool_embeddings = self._embeddings  # type: ignore[method-assign]

    def forward(self, x):
        self.calls["forward"] += 1
        return self.out(self.body(x))

    def _embeddings(self, batch):
        self.calls["embeddings"] += 1
        return self.body(batch)


def _loader(data):
    return lambda idx: [data[idx[i : i + 8]] for i in range(0, len(idx), 8)]


def test_engine_computes_only_what_the_heuristic_requires():
    data = torch.randn(40, 4)
    net = _Spy()
    select_pool(net, range(40), _loader(data), get_heuristic("entropy"), 5)
    assert net.calls == {"forward": 5, "embeddings": 0}
    net.calls = {"forward": 0, "embeddings": 0}
    select_pool(net, range(30), _loader(data), Coreset(), 5, labelled_indices=range(30, 40))
    assert net.calls == {"forward": 0, "embeddings": 4 + 2}  # pool batches + labelled batches, no logits
    net.calls = {"forward": 0, "embeddings": 0}
    select_pool(net, range(40), _loader(data), BatchBALD(n_samples=4), 5)
    assert net.calls["embeddings"] == 0
    out = pool_outputs(net, data[:8], BADGE())
    assert set(out) == {"logits", "embeddings"} and out["embeddings"].shape == (8, 8)


def test_embedding_layer_is_captured_in_the_logits_pass():
    data = torch.randn(20, 4)
    net = _Spy(with_hook=False)
    with pytest.raises(ValueError, match=r"needs embeddings.*add `def pool_embeddings\(self, batch\)"):
        select_pool(net, range(20), _loader(data), BADGE(), 3)
    with pytest.raises(ValueError, match=r"embedding_layer: _Spy has no layer 'nope'"):
        check_outputs(net, BADGE(embedding_layer="nope"))
    net.embedding_layer = "out"
    net.eval()
    out = pool_outputs(net, data[:8], BADGE())
    assert net.calls["forward"] == 1  # one pass for logits and embeddings
    assert torch.allclose(out["embeddings"], net.body(data[:8]))
    assert len(select_pool(net, range(20), _loader(data), ExpectedGradientLength(), 4).indices) == 4


def test_query_size_larger_than_the_pool_is_an_error():
    data = torch.randn(10, 4)
    with pytest.raises(ValueError, match="query_size: 12 examples asked but the pool holds only 10"):
        select_pool(_Spy(), range(10), _loader(data), BatchBALD(n_samples=3), 12)
    with pytest.raises(ValueError, match="query_size: 12 examples asked but the pool holds only 10"):
        select_pool(_Spy(), range(10), _loader(data), get_heuristic("entropy"), 12)


def test_ensemble_style_members_are_mc_samples():
    """A module whose mc_logits returns its members (M != n_samples) works with every MC heuristic."""

    class Members(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(1)
            self.members = nn.ModuleList(nn.Linear(4, 3) for _ in range(3))

        def forward(self, x):
            return torch.stack([m(x) for m in self.members]).mean(0)

        def mc_logits(self, batch, n_samples):
            return torch.stack([m(batch) for m in self.members])

    data = torch.randn(24, 4)
    for strategy in (BALD(10), VoteEntropy(10), BatchBALD(n_samples=10), EPIG(n_samples=10, n_targets=5)):
        strategy.begin(0)
        assert len(select_pool(Members(), range(24), _loader(data), strategy, 4).indices) == 4


def test_predict_pool_returns_dicts_in_pool_order():
    net = nn.Linear(3, 2)
    data = torch.randn(10, 3)
    out = predict_pool(net, [3, 1, 7], _loader(data), lambda m, x: {"a": m(x), "b": x.sum(1)})
    assert set(out) == {"a", "b"} and torch.allclose(out["b"], data[[3, 1, 7]].sum(1))


def test_score_pool_keeps_the_old_interface_for_custom_heuristics():
    from trinity_lightning.active import QueryStrategy

    class Old(QueryStrategy):
        def score(self, logits, mask=None):
            return -logits[:, 0]

    net = nn.Linear(3, 2)
    data = torch.randn(12, 3)
    sel = score_pool(net, [data[:6], data[6:]], Old(), 3, list(range(12)))
    with torch.no_grad():
        assert sel.indices == (-net(data)[:, 0]).topk(3).indices.tolist()


# ------------------------------------------------------------------------------------------- in a campaign
@pytest.mark.parametrize("name", ["coreset", "batchbald"])
def test_campaign_with_a_batch_aware_heuristic(tmp_path, name):
    import lightning.pytorch as pl

    from trinity_lightning.active import ActiveLearning

    from ._helpers import datamodule, mlp

    dm = datamodule()
    model = mlp()
    al = ActiveLearning(name, query_size=10, budget=32, curve_path=str(tmp_path / "curve.csv"))
    trainer = pl.Trainer(
        max_epochs=-1,
        callbacks=[al],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    if name == "coreset":
        with pytest.raises(ValueError, match="add `def pool_embeddings"):
            trainer.fit(model, datamodule=dm)
        model.embedding_layer = "model.3"  # the input of the classifier's last linear layer
        trainer = pl.Trainer(
            max_epochs=-1,
            callbacks=[al],
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=tmp_path,
        )
    trainer.fit(model, datamodule=dm)
    assert dm.n_labelled == 32 and al.round == 2 and len(set(al.last_query)) == 10


class _Recorder(BatchBALD):
    """Keeps the pool outputs select_pool hands over (to check what a joint heuristic sees)."""

    def select(self, pool, k, labelled=None):
        self.seen = pool
        return list(range(k))


@pytest.mark.parametrize(
    "net",
    [
        nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3)),  # trunk split
        nn.Sequential(nn.Dropout(0.2), nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3)),  # no trunk
    ],
)
def test_mc_dropout_masks_are_consistent_across_the_pool(net):
    # Copies of one input in different batches must get the same S samples: BatchBALD's joint entropy and EPIG
    # compare examples sample by sample. Per-example masks (before) made copies look independent.
    torch.manual_seed(0)
    x = torch.randn(3, 4)
    data = torch.cat([x, x, x])  # items i, i + 3, i + 6 are copies; batches of 4 split them
    loader = lambda idx: [data[idx[i : i + 4]] for i in range(0, len(idx), 4)]  # noqa: E731
    recorder = _Recorder(n_samples=16)
    recorder.begin(7)
    select_pool(net, range(9), loader, recorder, k=2)
    mc = recorder.seen["mc_logits"]  # (S, N, C)
    assert mc.shape == (16, 9, 3)
    for i in range(3):
        assert torch.allclose(mc[:, i], mc[:, i + 3], atol=1e-5) and torch.allclose(mc[:, i], mc[:, i + 6], atol=1e-5)
    assert not torch.allclose(mc[0], mc[1])  # still 16 different networks
    bald = score_pool(net, loader(list(range(9))), BALD(n_samples=16), k=9, indices=range(9))
    by_index = dict(zip(bald.indices, bald.scores))
    assert all(abs(by_index[i] - by_index[i + 3]) < 1e-5 for i in range(3))  # copies score the same


def test_consistent_channel_dropout_and_fallbacks():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Dropout2d(0.5), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    x = torch.randn(1, 1, 6, 6).repeat(3, 1, 1, 1)
    from trinity_lightning.active.scoring import mc_logits

    out = mc_logits(net, x, n_samples=5, seed=3)[0]
    assert torch.allclose(out, out[:, :1].expand_as(out), atol=1e-5)
    assert torch.allclose(mc_logits(net, x, n_samples=5, seed=3)[0], out)  # same seed, same networks
    assert not torch.allclose(mc_logits(net, x, n_samples=5, seed=4)[0], out)
    assert type(net[1]).forward is net[1].forward.__func__  # the layer's own forward restored afterwards
