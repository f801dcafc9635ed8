"""Consistent MC dropout for the Hugging Face adapters (issue 23): sample ``s`` is one network for every example,
whatever the batch, the padding and the split calls; tiny randomly initialized BERTs built from a config."""

import json

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from trinity_lightning.active import ActiveLearning, ActiveLearningDataModule, scoring
from trinity_lightning.active.batch import EPIG, BatchBALD

transformers = pytest.importorskip("transformers")

from trinity_lightning.active.hf import (  # noqa: E402
    ConsistentDropout,
    HFCollator,
    HFSequenceClassifier,
    HFTaggedDataset,
    HFTextDataset,
    HFTokenClassifier,
    consistent_keep,
)

from .test_hf import VOCAB, WORDS, _sentences, _tokenizer, _trainer  # noqa: E402

ATOL = 1e-5


def _bert(kind, hidden=0.2, attention=0.1, num_labels=3, implementation=None):
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        num_labels=num_labels,
        hidden_dropout_prob=hidden,
        attention_probs_dropout_prob=attention,
        initializer_range=0.3,  # logits large enough for each dropout to show
    )
    if implementation is not None:
        config._attn_implementation = implementation
    return getattr(transformers, f"BertFor{kind}Classification")(config)


def _module(kind, **kwargs):
    cls = HFSequenceClassifier if kind == "Sequence" else HFTokenClassifier
    return cls(_bert(kind, **kwargs)).eval()


def _items(kind, sentences):
    tokenizer = _tokenizer()
    if kind == "Sequence":
        return list(HFTextDataset([" ".join(s) for s in sentences], None, tokenizer))
    return list(HFTaggedDataset(sentences, None, tokenizer))


def _mc(model, items, n_samples=6, seed=11):
    with torch.inference_mode():
        return scoring.mc_logits(model, HFCollator(0)(items), n_samples, seed)[0]


SHORT = [["paris", "is", "big"], ["the", "city"]]
LONG = [["the", "playing", "city", "is", "a", "big", "city", "paris"]]


@pytest.mark.parametrize("kind", ["Sequence", "Token"])
def test_an_example_has_the_same_samples_alone_in_other_batches_padded_and_split(kind, monkeypatch):
    model = _module(kind)
    short, long = _items(kind, SHORT), _items(kind, LONG)
    together = _mc(model, short)  # (S, 2, ...)
    alone = _mc(model, short[:1])
    first = together[:, 0, : alone.shape[2]] if kind == "Token" else together[:, 0]
    assert torch.allclose(alone[:, 0], first, atol=ATOL)
    padded = _mc(model, [long[0], short[0]])  # in another batch, with much more padding after it
    second = padded[:, 1, : alone.shape[2]] if kind == "Token" else padded[:, 1]
    assert torch.allclose(alone[:, 0], second, atol=ATOL)
    monkeypatch.setattr(scoring, "ROWS_PER_CALL", 3)  # sampled_passes: 2 samples per call, 3 calls
    assert torch.allclose(_mc(model, short), together, atol=ATOL)
    monkeypatch.setattr(scoring, "ROWS_PER_CALL", 1)  # one sample per call
    assert torch.allclose(_mc(model, short), together, atol=ATOL)
    # it is really dropout: the samples differ, the seed decides them, and pool_logits stays deterministic
    assert (together[0] - together[1]).abs().max() > 1e-3
    assert not torch.allclose(_mc(model, short, seed=12), together, atol=ATOL)
    with torch.inference_mode():
        plain = scoring.model_logits(model, HFCollator(0)(short))[0]
        assert torch.equal(plain, scoring.model_logits(model, HFCollator(0)(short))[0])
    assert not torch.allclose(together[0], plain, atol=1e-3)


def test_attention_probability_dropout_is_sampled_the_same_by_sdpa_and_eager_attention():
    items = _items("Sequence", SHORT)
    sdpa = _module("Sequence", hidden=0.0, attention=0.5)  # only the attention probabilities drop
    eager = _module("Sequence", hidden=0.0, attention=0.5, implementation="eager")
    assert sdpa.model.config._attn_implementation == "sdpa"
    samples = _mc(sdpa, items)
    assert (samples[0] - samples[1]).abs().max() > 1e-3  # the attention dropout is on
    assert torch.allclose(samples, _mc(eager, items), atol=ATOL)  # eager: F.dropout on the probabilities
    flash = _module("Sequence", hidden=0.0, attention=0.5)
    flash.model.config._attn_implementation_internal = "flash_attention_2"
    with pytest.raises(ValueError, match="attn_implementation='sdpa'"):
        flash.mc_logits(HFCollator(0)(items), 2, seed=0)


def test_old_per_call_masks_differ_and_the_seed_reaches_the_adapter():
    """The old ``mc_logits`` (fresh masks each call, per example) fails the first test; the seed of a pool pass
    now reaches the adapter through ``scoring.mc_logits``."""
    model = _module("Sequence")
    short = _items("Sequence", SHORT)
    with torch.inference_mode(), scoring._DropoutOn(model.model):  # what the old code did
        old = torch.stack([model.pool_logits(HFCollator(0)(short[:1])) for _ in range(6)])
        old_again = torch.stack([model.pool_logits(HFCollator(0)(short[:1])) for _ in range(6)])
    assert not torch.allclose(old, old_again, atol=ATOL)
    with torch.inference_mode():
        direct = model.mc_logits(HFCollator(0)(short[:1]), 6, seed=5)[0]
    assert torch.allclose(_mc(model, short[:1], seed=5), direct, atol=ATOL)


def test_dropout_flags_are_restored_also_on_an_exception():
    model = _module("Token")
    before = [m.training for m in model.modules()]
    bad = _items("Token", SHORT)
    bad[0] = dict(bad[0], input_ids=torch.full_like(bad[0]["input_ids"], len(VOCAB) + 5))  # out of vocabulary
    with pytest.raises(IndexError):
        model.mc_logits(HFCollator(0)(bad), 3, seed=0)
    assert [m.training for m in model.modules()] == before
    assert torch._C._len_torch_function_stack() == 0  # the dropout mode is gone
    x = torch.ones(1000)
    assert 300 < int((nn.Dropout(0.5).train()(x) == 0).sum()) < 700  # torch's own dropout is back
    net = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5)).eval()
    with ConsistentDropout(net, seed=0, n_examples=2), pytest.raises(ValueError, match="batch rows first"):
        net(torch.ones(3, 3))  # 3 rows are not 1 sample x 2 examples
    assert not net[1].training


def test_keep_masks_are_bernoulli_and_independent_across_samples_and_layers():
    keep = consistent_keep(3, range(4), 0, (64, 256), 0.3) > 0
    assert abs(keep.float().mean().item() - 0.7) < 0.01
    both = (keep[0] == keep[1]).float().mean().item()  # independent: 0.7^2 + 0.3^2 = 0.58
    assert abs(both - 0.58) < 0.01
    other_layer = consistent_keep(3, range(1), 1, (64, 256), 0.3) > 0
    assert abs((other_layer[0] == keep[0]).float().mean().item() - 0.58) < 0.01
    assert abs((keep[0, :, 1:] == keep[0, :, :-1]).float().mean().item() - 0.58) < 0.01  # neighbouring units
    if torch.cuda.is_available():  # the same bits on every device (DDP ranks on GPUs draw the same networks)
        cuda = consistent_keep(3, range(4), 0, (64, 256), 0.3, device="cuda")
        assert torch.equal(cuda.cpu() > 0, keep)


def test_batchbald_and_epig_selections_do_not_depend_on_the_pool_batches():
    """The pool in batches of 3 or of 7 (as DDP shards it differently): the same MC samples, the same picks."""
    rng = torch.Generator().manual_seed(0)
    sentences = [[WORDS[int(i)] for i in torch.randint(0, len(WORDS), (int(n),), generator=rng)] for n in
                 torch.randint(2, 7, (21,), generator=rng)]  # fmt: skip
    items = _items("Sequence", sentences)
    model = _module("Sequence")
    for strategy in (BatchBALD(n_samples=8), EPIG(n_samples=8, n_targets=10)):
        picks = []
        for size in (3, 7):
            strategy.begin(4)
            loader = lambda idx, size=size: [HFCollator(0)([items[i] for i in idx[j : j + size]])  # noqa: E731
                                             for j in range(0, len(idx), size)]  # fmt: skip
            picks.append(scoring.select_pool(model, range(21), loader, strategy, k=5, shard=False).indices)
        assert picks[0] == picks[1] and len(set(picks[0])) == 5


def _campaign(tmp_path, kind, heuristic, kwargs):
    pl.seed_everything(0, verbose=False)
    tokenizer = _tokenizer()
    sentences, tags = _sentences(30, 3)
    if kind == "Sequence":
        texts = [" ".join(s) for s in sentences]
        labels = [int("berlin" in s or "paris" in s) for s in sentences]
        data, field, model = HFTextDataset(texts, labels, tokenizer), "labels", HFSequenceClassifier
    else:
        data, field, model = HFTaggedDataset(sentences, tags, tokenizer), "tags", HFTokenClassifier
    val = torch.utils.data.Subset(data, range(24, 30))
    data = torch.utils.data.Subset(data, range(24))
    dm = ActiveLearningDataModule(
        data,
        val=val,
        collate_fn=HFCollator(0),
        label_field=field,
        initial_labelled=6,
        batch_size=6,
        seed=0,
        pool_batch_size=5,
    )
    al = ActiveLearning(heuristic, query_size=4, budget=10, strategy_kwargs=kwargs, seed=1)
    net = _bert(kind, num_labels=2 if kind == "Sequence" else 3)
    _trainer(tmp_path, al).fit(model(net, lr=3e-3), datamodule=dm)
    assert al.finished
    return [i for i in dm.labelled_indices if dm.labelled_round[i] > 0]


@pytest.mark.parametrize(
    ("kind", "heuristic"),
    [
        ("Sequence", "batchbald"),
        pytest.param("Sequence", "epig", marks=pytest.mark.slow),
        pytest.param("Token", "bald", marks=pytest.mark.slow),
        pytest.param("Token", "vote_entropy", marks=pytest.mark.slow),
    ],
)
def test_joint_and_committee_heuristics_in_a_campaign_are_deterministic(tmp_path, kind, heuristic, monkeypatch):
    seeds = []
    cls = HFSequenceClassifier if kind == "Sequence" else HFTokenClassifier
    original = cls.mc_logits

    def record(self, batch, n_samples, seed=None):
        seeds.append(seed)
        return original(self, batch, n_samples, seed)

    monkeypatch.setattr(cls, "mc_logits", record)
    kwargs = {"n_samples": 4, **({"n_targets": 8} if heuristic == "epig" else {})}
    first = _campaign(tmp_path / "a", kind, heuristic, kwargs)
    assert len(first) == 4
    assert len(seeds) >= 3 and len(set(seeds)) == 1 and seeds[0] is not None  # one seed for the pool's batches
    assert _campaign(tmp_path / "b", kind, heuristic, kwargs) == first


def test_batchbald_on_a_token_classifier_says_it_needs_classification_outputs(tmp_path):
    model = _module("Token")
    items = _items("Token", SHORT)
    with pytest.raises(ValueError, match=r"classification outputs \(N, C\) only"):
        scoring.select_pool(model, [0, 1], lambda idx: [HFCollator(0)([items[i] for i in idx])], BatchBALD(4), 1)


def _other(name):
    torch.manual_seed(0)
    if name == "bart":  # dropout as float rates read by F.dropout(training=self.training), and LayerDrop
        config = transformers.BartConfig(
            vocab_size=20, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=32,
            dropout=0.3, attention_dropout=0.3, activation_dropout=0.3, encoder_layerdrop=0.5, num_labels=3,
            pad_token_id=1, eos_token_id=2, bos_token_id=0, init_std=0.3,
        )  # fmt: skip
        return transformers.BartForSequenceClassification(config), 1
    config = transformers.DistilBertConfig(
        vocab_size=20, dim=16, n_layers=1, n_heads=2, hidden_dim=32, max_position_embeddings=32, dropout=0.3,
        attention_dropout=0.3, num_labels=3, initializer_range=0.3,
    )  # fmt: skip
    return transformers.DistilBertForSequenceClassification(config), 0


@pytest.mark.parametrize("name", ["bart", "distilbert"])
def test_other_architectures_get_consistent_samples(name):
    net, pad = _other(name)
    model = HFSequenceClassifier(net).eval()
    ids = [torch.tensor([0, 5, 6, 7, 2]), torch.tensor([0, 8, 9, 10, 11, 12, 13, 14, 2]), torch.tensor([0, 9, 2])]
    items = [{"input_ids": i, "attention_mask": torch.ones_like(i)} for i in ids]
    with torch.inference_mode():
        together = scoring.mc_logits(model, HFCollator(pad)(items), 5, 3)[0]
        alone = scoring.mc_logits(model, HFCollator(pad)(items[:1]), 5, 3)[0]
        reversed_ = scoring.mc_logits(model, HFCollator(pad)(items[::-1]), 5, 3)[0]
    assert torch.allclose(together[:, 0], alone[:, 0], atol=ATOL)
    assert torch.allclose(together, reversed_.flip(1), atol=ATOL)
    assert (together[0] - together[1]).abs().max() > 1e-2
    assert not any(m.training for m in model.modules())
    if name == "bart":
        assert model.model.model.encoder.layerdrop == 0.5  # held at 0 for the passes, restored after


class _SameAlone(pl.Callback):
    """After each query, redo it on one process (the whole pool, other batches) with the round's seed."""

    def __init__(self, al, root, data):
        self.al, self.root, self.data = al, root, data

    def on_train_epoch_end(self, trainer, pl_module):
        al, dm = self.al, trainer.datamodule
        if al.epochs_in_round != 0 or al.round == 0 or al.finished:
            return
        candidates = sorted(dm.pool_indices + al.last_query)
        strategy = BatchBALD(n_samples=al.strategy.n_samples)
        strategy.begin(al.strategy._generator.initial_seed())
        loader = lambda idx: [HFCollator(0)([self.data[i] for i in idx[j : j + 7]])  # noqa: E731
                              for j in range(0, len(idx), 7)]  # fmt: skip
        alone = scoring.select_pool(pl_module, candidates, loader, strategy, len(al.last_query), shard=False)
        record = {"rank": trainer.global_rank, "query": sorted(al.last_query), "alone": sorted(alone.indices)}
        (self.root / f"rank{trainer.global_rank}_round{al.round}.json").write_text(json.dumps(record))


@pytest.mark.slow
@pytest.mark.distributed
def test_ddp_ranks_sample_the_same_networks(tmp_path):
    """BatchBALD on an HF model under DDP (each rank scores its shard of the pool, in batches of 4) picks what one
    process picks from the whole pool in batches of 7: every rank drew the same networks."""
    sentences, _ = _sentences(30, 3)
    labels = [int("berlin" in s or "paris" in s) for s in sentences]
    data = HFTextDataset([" ".join(s) for s in sentences], labels, _tokenizer())
    dm = ActiveLearningDataModule(
        data, val=torch.utils.data.Subset(data, range(6)), collate_fn=HFCollator(0), label_field="labels",
        initial_labelled=6, batch_size=6, pool_batch_size=4, seed=0,
    )  # fmt: skip
    al = ActiveLearning("batchbald", query_size=4, budget=14, strategy_kwargs={"n_samples": 6}, seed=2)
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=-1, logger=False, default_root_dir=tmp_path,
        callbacks=[al, _SameAlone(al, tmp_path, data)], enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False,
    )  # fmt: skip
    trainer.fit(HFSequenceClassifier(_bert("Sequence", num_labels=2), lr=3e-3), datamodule=dm)
    records = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("rank*_round*.json"))]
    assert len(records) == 4  # 2 ranks x 2 queries
    for r in records:
        assert r["query"] == r["alone"] and len(r["query"]) == 4


def test_a_model_without_dropout_is_refused_with_the_fix():
    model = HFSequenceClassifier(_bert("Sequence", hidden=0.0, attention=0.0))
    for m in model.modules():  # no dropout layer at all
        for name, child in list(m.named_children()):
            if isinstance(child, nn.Dropout):
                setattr(m, name, nn.Identity())
    with pytest.raises(ValueError, match="needs dropout layers"):
        model.mc_logits(HFCollator(0)(_items("Sequence", SHORT)), 2, seed=0)
