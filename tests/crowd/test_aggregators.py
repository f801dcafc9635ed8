from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from trinity_lightning.crowd import MBEM, AnnotationTable, DawidSkene, MajorityVote, OneCoinDawidSkene
from trinity_lightning.crowd.dawid_skene import _Params
from trinity_lightning.crowd.simulate import random_confusions, simulate_annotations

# crowd-kit 1.4.2 on the toy table of conftest.py (DawidSkene(100, 1e-5) / OneCoinDawidSkene(100, 1e-5))
CK_DS_PROBAS = [
    [1.0, 0.0, 0.0],
    [0.0, 1.0, 0.0],
    [0.0, 0.0, 1.0],
    [1.0, 0.0, 0.0],
    [0.0, 0.0, 1.0],
    [1.0, 0.0, 0.0],
    [0.0, 1.0, 0.0],
    [0.18715568, 0.81284432, 0.0],
]
CK_DS_PRIORS = [0.39839446, 0.35160554, 0.25]
CK_DS_ITERATIONS = 19
CK_ONECOIN_PROBAS = [
    [0.99999998, 0.0, 2e-08],
    [0.0, 1.0, 0.0],
    [0.0, 0.0, 1.0],
    [0.0, 0.99999735, 2.65e-06],
    [0.0, 0.0, 1.0],
    [1.0, 0.0, 0.0],
    [5e-07, 0.9999995, 0.0],
    [0.99999977, 2.3e-07, 0.0],
]
CK_ONECOIN_PRIORS = [0.37500003, 0.37499964, 0.25000033]
CK_ONECOIN_ITERATIONS = 7
CK_MV_PROBAS = [
    [2 / 3, 1 / 3, 0.0],
    [0.0, 1.0, 0.0],
    [1 / 3, 0.0, 2 / 3],
    [2 / 3, 1 / 3, 0.0],
    [0.0, 0.25, 0.75],
    [1.0, 0.0, 0.0],
    [0.0, 2 / 3, 1 / 3],
    [0.5, 0.0, 0.5],
]


def test_majority_vote_fractions_and_named_tie_rules(toy):
    smallest = MajorityVote(tie_break="smallest").fit(toy)
    np.testing.assert_allclose(smallest.probas_.numpy(), CK_MV_PROBAS, atol=1e-12)
    assert smallest.ties_ == 1 and smallest.labels_.tolist()[-1] == 0  # t8: a/c tie -> 'a'
    picks = {MajorityVote(seed=s).fit(toy).labels_[-1].item() for s in range(20)}
    assert picks == {0, 2}  # random ties land on both tied classes, never on 'b'
    assert MajorityVote(seed=3).fit(toy).labels_.tolist() == MajorityVote(seed=3).fit(toy).labels_.tolist()
    with pytest.raises(ValueError, match="tie_break: expected one of"):
        MajorityVote(tie_break="first")


def test_majority_vote_worker_weights(toy):
    weighted = MajorityVote(tie_break="smallest").fit(toy, weights={"w1": 1.0, "w2": 1.0, "w3": 5.0, "w4": 1.0})
    assert weighted.table_.decode_labels(weighted.labels_)[0] == "b"  # w3 outweighs w1 + w2 on t1
    with pytest.raises(ValueError, match="no \\(finite\\) skill for worker 'w4'"):
        MajorityVote().fit(toy, weights={"w1": 1.0, "w2": 1.0, "w3": 1.0})
    with pytest.raises(ValueError, match="non-negative"):
        MajorityVote().fit(toy, weights=torch.tensor([1.0, -1.0, 1.0, 1.0]))


def test_dawid_skene_crowdkit_compat_reproduces_crowdkit(toy):
    ds = DawidSkene(crowdkit_compat=True).fit(toy)
    np.testing.assert_allclose(ds.probas_.numpy(), CK_DS_PROBAS, atol=1e-7)
    np.testing.assert_allclose(ds.priors_.numpy(), CK_DS_PRIORS, atol=1e-7)
    assert ds.n_iter_ == CK_DS_ITERATIONS
    errors = ds.errors_.numpy()  # [worker, observed, true]: crowd-kit's errors_.loc[(w, observed), true]
    assert errors[0, 0, 1] == pytest.approx(0.4483807, abs=1e-6)
    assert errors[0, 1, 1] == pytest.approx(0.5516193, abs=1e-6)
    assert errors[2, 2, 0] == pytest.approx(0.08557035, abs=1e-7)
    assert errors[2, 0, 0] == pytest.approx(0.4572148, abs=1e-6)
    assert ds.table_.decode_labels(ds.labels_) == ["a", "b", "c", "a", "c", "a", "b", "b"]


def test_one_coin_crowdkit_compat_reproduces_crowdkit(toy):
    oc = OneCoinDawidSkene(crowdkit_compat=True).fit(toy)
    np.testing.assert_allclose(oc.probas_.numpy(), CK_ONECOIN_PROBAS, atol=1e-7)
    np.testing.assert_allclose(oc.priors_.numpy(), CK_ONECOIN_PRIORS, atol=1e-7)
    assert oc.n_iter_ == CK_ONECOIN_ITERATIONS
    assert oc.skills_.shape == (4,) and bool(((oc.skills_ > 0) & (oc.skills_ < 1)).all())


def _naive_em_step(table: AnnotationTable, post: np.ndarray, smoothing: float) -> tuple[np.ndarray, float]:
    """Loop-based M-step then E-step of Dawid-Skene: the reference for the vectorized one."""
    m, K = table.num_workers, table.num_classes
    counts = np.full((m, K, K), smoothing)
    for i, w, y in zip(table.items.tolist(), table.workers.tolist(), table.labels.tolist()):
        counts[w, :, y] += post[i]
    conf = counts / counts.sum(axis=2, keepdims=True)
    prior = (post.sum(axis=0) + smoothing) / (len(post) + K * smoothing)
    log_post = np.tile(np.log(prior), (table.num_items, 1))
    for i, w, y in zip(table.items.tolist(), table.workers.tolist(), table.labels.tolist()):
        log_post[i] += np.log(conf[w, :, y])
    top = log_post.max(axis=1, keepdims=True)
    likelihood = np.exp(log_post - top).sum(axis=1, keepdims=True)
    return np.exp(log_post - top) / likelihood, float((top + np.log(likelihood)).sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorized_em_step_equals_loop_reference(seed):
    truth = torch.from_numpy(np.random.default_rng(seed).integers(0, 4, 60))
    table = simulate_annotations(truth, random_confusions(7, 4, seed=seed), labels_per_item=3, seed=seed)
    ds = DawidSkene(n_iter=1, smoothing=0.5, dtype=torch.float64).fit(table)
    votes = MajorityVote().fit(table).probas_.numpy()
    expected, log_likelihood = _naive_em_step(table, votes, 0.5)
    np.testing.assert_allclose(ds.probas_.numpy(), expected, atol=1e-10)
    assert ds.log_likelihood_[0] == pytest.approx(log_likelihood, rel=1e-12)


def test_log_likelihood_never_falls_and_float32_agrees():
    truth = torch.from_numpy(np.random.default_rng(0).integers(0, 5, 800))
    table = simulate_annotations(truth, random_confusions(20, 5, seed=0), labels_per_item=4, seed=0)
    ds64 = DawidSkene(smoothing=0.0, tol=1e-9, dtype="float64").fit(table)
    history = np.array(ds64.log_likelihood_)
    assert ds64.n_iter_ > 3 and np.all(np.diff(history) > -1e-6)
    ds32, ds64b = (DawidSkene(n_iter=10, tol=0.0, dtype=d).fit(table) for d in ("float32", "float64"))
    np.testing.assert_allclose(ds32.probas_.numpy(), ds64b.probas_.numpy(), atol=1e-4)
    assert (ds64.labels_ == truth).float().mean() > (MajorityVote().fit(table).labels_ == truth).float().mean()
    errors = ds64.errors_  # each (worker, true class) column is a distribution over the observed labels
    assert torch.allclose(errors.sum(1), torch.ones_like(errors.sum(1)))


def test_class_nobody_used_and_worker_with_one_item(toy):
    extra = pd.concat([toy, pd.DataFrame([("t9", "solo", "a")], columns=toy.columns)], ignore_index=True)
    for cls in (DawidSkene, OneCoinDawidSkene):
        model = cls().fit(extra, classes=["a", "b", "c", "never"])
        assert torch.isfinite(model.probas_).all() and model.probas_[:, 3].max() < 1e-3
        assert model.worker_frame().shape == (5, 3)


def test_divergence_raises_with_the_iteration(toy):
    class Broken(DawidSkene):
        calls = 0

        def _m_step(self, inc, post):
            params = super()._m_step(inc, post)
            Broken.calls += 1
            if Broken.calls == 3:  # the parameters of E-step 3 are NaN
                return _Params(params.log_conf_t * float("nan"), params.log_prior, 0.0, params.counts)
            return params

    with pytest.raises(FloatingPointError, match="Broken diverged at iteration 3"):
        Broken(tol=0.0).fit(toy)


def test_em_argument_validation(toy):
    with pytest.raises(ValueError, match="n_iter: expected a non-negative integer"):
        DawidSkene(n_iter=-1)
    with pytest.raises(ValueError, match="smoothing"):
        DawidSkene(smoothing=-1)
    with pytest.raises(ValueError, match="dtype"):
        DawidSkene(dtype="float16")
    with pytest.raises(ValueError, match=r"init_posteriors: expected shape \(8, 3\)"):
        DawidSkene().fit(toy, init_posteriors=torch.ones(2, 3))
    with pytest.raises(ValueError, match="at least 2 classes"):
        DawidSkene().fit(pd.DataFrame({"task": [1], "worker": [1], "label": [0]}))
    with pytest.raises(RuntimeError, match="not fitted"):
        DawidSkene().to_frame()


def test_mbem_recovers_workers_from_a_good_model_with_one_label_per_item():
    rng = np.random.default_rng(0)
    truth = torch.from_numpy(rng.integers(0, 4, 3000))
    conf = random_confusions(30, 4, seed=1)
    table = simulate_annotations(truth, conf, labels_per_item=1, seed=2)
    model = torch.nn.functional.one_hot(truth, 4).double() * 0.6 + 0.1  # a model right on every item
    mbem = MBEM(smoothing=0.01).fit(table, model)
    true_acc = conf.diagonal(dim1=1, dim2=2).mean(1)
    assert torch.corrcoef(torch.stack([mbem.worker_accuracy_, true_acc]))[0, 1] > 0.9
    assert (mbem.labels_ == truth).float().mean() >= (MajorityVote().fit(table).labels_ == truth).float().mean()
    with pytest.raises(ValueError, match="predictions: expected shape"):
        MBEM().fit(table, torch.ones(5, 4))
    with pytest.raises(ValueError, match="finite and non-negative"):
        MBEM().fit(table, model * float("nan"))
    hard = MBEM().fit(table, truth)  # class ids work too
    assert hard.probas_.shape == (3000, 4)


def test_mbem_priors_class_none_and_model():
    """prior="none": the workers' likelihood alone (the official code); "class" also weighs in the class prior."""
    table = {"task": [0, 1, 2, 3], "worker": ["a", "a", "b", "b"], "label": [0, 1, 1, 0]}
    model = torch.tensor([0, 0, 0, 1])  # skewed predictions: class 0 has prior 3/4
    none = MBEM(prior="none", smoothing=0.5).fit(table, model)
    cls = MBEM(prior="class", smoothing=0.5).fit(table, model)
    conf = none.errors_.transpose(1, 2).double()  # (worker, true, observed)
    workers = [list(none.table_.worker_ids).index(w) for w in table["worker"]]
    like = torch.stack([conf[w, :, y] for w, y in zip(workers, table["label"])])
    np.testing.assert_allclose(none.probas_.double(), like / like.sum(1, keepdim=True), atol=1e-5)
    assert cls.priors_[0] > 0.6  # the (smoothed) frequency of class 0 in the predictions
    joint = like * cls.priors_.double()
    np.testing.assert_allclose(cls.probas_.double(), joint / joint.sum(1, keepdim=True), atol=1e-5)
    assert not torch.allclose(none.probas_, cls.probas_, atol=1e-3)
    with pytest.raises(ValueError, match="prior: expected one of 'model', 'class', 'none'"):
        MBEM(prior="uniform")  # type: ignore[arg-type]
    from trinity_lightning.crowd import CrowdEM

    assert CrowdEM(prior="none").prior == "none"  # the callback takes the same priors
    with pytest.raises(ValueError, match="prior: expected one of"):
        CrowdEM(prior="uniform")  # type: ignore[arg-type]


def test_mbem_class_prior_is_the_paper_q_once_and_uniform_on_balanced_predictions():
    """prior="class" is Algorithm 1's q: the (smoothed) class frequencies of the model's hard predictions, applied
    once, along the class axis. Balanced predictions give a uniform q, hence exactly prior="none"'s posteriors; a
    model that under-predicts a class gives that class a small q (the measured cause of the class prior's loss in
    benchmarks/crowd_label_once.py: q is skewed on balanced data, not mis-computed)."""
    rng = np.random.default_rng(3)
    K, n = 5, 2000
    truth = torch.from_numpy(rng.integers(0, K, n))
    conf = random_confusions(40, K, seed=4)
    table = simulate_annotations(truth, conf, labels_per_item=1, seed=5)
    balanced = torch.arange(n) % K  # every class predicted n / K times (and mostly wrong: q must not care)
    cls = MBEM(prior="class").fit(table, balanced)
    none = MBEM(prior="none").fit(table, balanced)
    np.testing.assert_allclose(cls.priors_.numpy(), np.full(K, 1 / K), atol=1e-6)
    np.testing.assert_allclose(cls.probas_.numpy(), none.probas_.numpy(), atol=1e-5)
    # soft predictions: q follows the argmax (hard=True, the official code), not the mean probability
    soft = torch.full((n, K), 0.1)
    soft[torch.arange(n), balanced] = 0.6
    soft[:, 0] += 0.05  # a constant lean towards class 0 that never changes an argmax
    np.testing.assert_allclose(MBEM(prior="class").fit(table, soft).priors_.numpy(), np.full(K, 1 / K), atol=1e-6)
    # skewed predictions: q_k = (count_k + s) / (n + K s), and the posterior is likelihood x q (not q squared)
    skewed = torch.where(balanced == 1, torch.zeros_like(balanced), balanced)  # class 1 never predicted
    s = 0.1
    cls = MBEM(prior="class", smoothing=s).fit(table, skewed)
    none = MBEM(prior="none", smoothing=s).fit(table, skewed)
    counts = torch.bincount(skewed, minlength=K).double()
    np.testing.assert_allclose(cls.priors_.double().numpy(), ((counts + s) / (n + K * s)).numpy(), rtol=1e-5)
    joint = none.probas_.double() * cls.priors_.double()
    np.testing.assert_allclose(cls.probas_.double().numpy(), (joint / joint.sum(1, keepdim=True)).numpy(), atol=1e-5)
    assert float(cls.probas_[:, 1].mean()) < 0.01 < float(none.probas_[:, 1].mean())


def test_to_frame_and_worker_frame(toy):
    ds = DawidSkene().fit(toy)
    frame = ds.to_frame()
    assert list(frame.columns) == ["item", "label", "confidence", "p_a", "p_b", "p_c"]
    assert frame["item"].tolist()[:2] == ["t1", "t2"] and np.allclose(frame[["p_a", "p_b", "p_c"]].sum(axis=1), 1)
    workers = ds.worker_frame()
    assert workers["accuracy"].is_monotonic_increasing and set(workers["worker"]) == {"w1", "w2", "w3", "w4"}


@pytest.mark.gpu
def test_cuda_matches_cpu(toy):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cpu = DawidSkene(dtype="float64").fit(toy).probas_
    gpu = DawidSkene(dtype="float64", device="cuda").fit(toy).probas_
    torch.testing.assert_close(gpu.cpu(), cpu)


@pytest.mark.parametrize("cls", [MajorityVote, DawidSkene, OneCoinDawidSkene])
def test_fit_predict_and_items_nobody_labelled_are_excluded_and_reported(toy, cls):
    every = ["t0", *sorted(set(toy.task))]
    with pytest.warns(UserWarning, match="1 of the declared items have no annotation"):
        model = cls().fit(toy, items=every)
    assert model.table_.unlabelled_items == ["t0"] and model.probas_.shape == (8, 3)
    assert model.to_frame()["item"].tolist() == every[1:]
    assert torch.equal(cls().fit_predict(toy), cls().fit(toy).labels_)
    compat = DawidSkene(crowdkit_compat=True).fit(toy, classes=["a", "b", "c", "never"])
    assert torch.isfinite(compat.probas_).all() and compat.probas_[:, 3].max() < 1e-9


def test_old_names_are_deprecated_aliases_of_crowdkits(toy):
    """Issue 13: n_iter/tol, probas_, labels_, errors_ as crowd-kit names and orients them; old names warn."""
    ds = DawidSkene(n_iter=7, tol=0.0).fit(toy)
    assert ds.n_iter == 7 and ds.n_iter_ == 7
    with pytest.warns(DeprecationWarning, match="max_iter is deprecated .* use n_iter"):
        old = DawidSkene(max_iter=7, tol=0.0).fit(toy)
    torch.testing.assert_close(old.probas_, ds.probas_)
    with pytest.warns(DeprecationWarning, match="max_iter is deprecated"):
        assert old.max_iter == 7
    with pytest.warns(DeprecationWarning, match="posteriors_ is deprecated .* use probas_"):
        torch.testing.assert_close(ds.posteriors_, ds.probas_)
    with pytest.warns(DeprecationWarning, match="worker_confusion_ is deprecated .* use errors_"):
        torch.testing.assert_close(ds.worker_confusion_, ds.errors_.transpose(1, 2))
    with pytest.warns(DeprecationWarning, match="max_iter"):
        assert MBEM(max_iter=3).n_iter == 3
    mv = MajorityVote().fit(toy)
    with pytest.warns(DeprecationWarning, match="posteriors_"):
        torch.testing.assert_close(mv.posteriors_, mv.probas_)
    # crowd-kit's axis order: errors_[worker, observed, true] sums to 1 over the observed labels
    for model in (ds, OneCoinDawidSkene().fit(toy)):
        torch.testing.assert_close(model.errors_.sum(1), torch.ones(4, 3, dtype=model.errors_.dtype))


@pytest.mark.parametrize("cls", [DawidSkene, OneCoinDawidSkene])
def test_one_observed_class_is_refused_until_the_classes_are_declared(cls):
    answers = pd.DataFrame({"task": ["a", "a", "b"], "worker": ["w", "v", "w"], "label": ["yes"] * 3})
    with pytest.raises(ValueError, match=r"needs at least 2 classes, but the table has one, 'yes'; declare"):
        cls().fit(answers)
    for source in (answers, AnnotationTable.read(answers)):
        model = cls().fit(source, classes=["no", "yes"])
        assert model.table_.classes == ["no", "yes"] and model.labels_.tolist() == [1, 1]
        assert model.probas_[:, 1].min() > 0.99
