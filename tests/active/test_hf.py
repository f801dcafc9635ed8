"""Hugging Face adapters (issue 23): a tiny randomly initialized BERT built from a config, no downloads."""

import itertools
import random

import lightning.pytorch as pl
import pytest
import torch

from trinity_lightning.active import ActiveLearning, ActiveLearningDataModule, get_heuristic
from trinity_lightning.active.scoring import score_forward

transformers = pytest.importorskip("transformers")

from trinity_lightning.active.hf import (  # noqa: E402
    HFCollator,
    HFSequenceClassifier,
    HFTaggedDataset,
    HFTextDataset,
    HFTokenClassifier,
    align_labels,
    word_predictions,
)

VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "the",
    "play",
    "##ing",
    "berlin",
    "is",
    "city",
    "##s",
    "paris",
    "a",
    "big",
]
WORDS = ["the", "playing", "berlin", "is", "city", "citys", "paris", "a", "big"]
TAG = {"berlin": 1, "paris": 1, "city": 2, "citys": 2}


def _tokenizer():
    return transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(VOCAB)})


def _bert(kind, num_labels=3):
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        num_labels=num_labels,
        hidden_dropout_prob=0.2,
    )
    return getattr(transformers, f"BertFor{kind}Classification")(config)


def _sentences(n, seed):
    rng = random.Random(seed)
    sentences = [[rng.choice(WORDS) for _ in range(rng.randint(2, 6))] for _ in range(n)]
    return sentences, [[TAG.get(w, 0) for w in s] for s in sentences]


def _trainer(root, al):
    return pl.Trainer(
        max_epochs=-1,
        callbacks=[al],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )


def test_alignment_to_subtokens_and_back():
    data = HFTaggedDataset([["the", "playing", "citys"]], [[0, 0, 2]], _tokenizer())
    item = data[0]
    assert item["input_ids"].tolist() == [2, 5, 6, 7, 10, 11, 3]
    assert item["word_starts"].tolist() == [1, 2, 4]
    word_ids = [None, 0, 1, 1, 2, 2, None]
    assert align_labels(word_ids, [0, 0, 2]) == [-100, 0, 0, -100, 2, -100, -100]
    assert align_labels(word_ids, [0, 0, 2], all_subtokens=True) == [-100, 0, 0, 0, 2, 2, -100]
    assert word_predictions([7, 0, 1, 1, 2, 2, 7], word_ids) == [0, 1, 2]
    truncated = HFTaggedDataset([["playing"] * 5], [[0] * 5], _tokenizer(), max_length=6)[0]
    assert truncated["word_starts"].tolist() == [1, 3, 0, 0, 0]  # words cut off start at 0 and are masked
    batch = HFCollator(0)([truncated, item])
    assert batch["word_mask"].tolist() == [[True, True, False, False, False], [True, True, True, False, False]]
    assert batch["tags"][1].tolist() == [0, 0, 2, -100, -100]
    with pytest.raises(ValueError, match=r"tags\[0\]: 1 tags for 2 words"):
        HFTaggedDataset([["the", "is"]], [[0]], _tokenizer())


def test_word_logits_and_scores_are_per_word():
    model = HFTokenClassifier(_bert("Token")).eval()
    sentences, tags = _sentences(4, 0)
    batch = HFCollator(0)([HFTaggedDataset(sentences, tags, _tokenizer())[i] for i in range(4)])
    logits, mask = model.pool_logits(batch)
    assert logits.shape[:2] == mask.shape == (4, max(len(s) for s in sentences))
    assert mask.sum(1).tolist() == [len(s) for s in sentences]
    subtokens = model._subtoken_logits(batch)
    assert torch.equal(logits[0, 1], subtokens[0, batch["word_starts"][0, 1]])
    samples, mask2 = model.mc_logits(batch, 3)
    assert samples.shape == (3, *logits.shape) and torch.equal(mask, mask2)
    assert not torch.allclose(samples[0], samples[1])  # dropout is on for the MC passes
    for name, kwargs in [("mnlp", {}), ("bald", {"n_samples": 3})]:
        scores = score_forward(get_heuristic(name, **kwargs))(model, batch)
        assert scores.shape == (4,) and bool(torch.isfinite(scores).all())
    assert [len(p) for p in model.decode(batch)] == [len(s) for s in sentences]


@pytest.mark.parametrize("heuristic", ["mnlp", pytest.param("bald", marks=pytest.mark.slow)])  # BALD: 3 passes
def test_token_classifier_campaign_in_words(tmp_path, heuristic):
    tokenizer = _tokenizer()
    sentences, tags = _sentences(60, 1)
    val_sentences, val_tags = _sentences(20, 2)
    dm = ActiveLearningDataModule(
        HFTaggedDataset(sentences, tags, tokenizer),
        val=HFTaggedDataset(val_sentences, val_tags, tokenizer),
        collate_fn=HFCollator(tokenizer.pad_token_id),
        label_field="tags",
        cost_fn=lambda item: len(item["tags"]),
        initial_labelled=8,
        batch_size=8,
        seed=0,
    )
    kwargs = {"n_samples": 3} if heuristic == "bald" else {}
    al = ActiveLearning(heuristic, query_size=30, budget=90, unit="tokens", strategy_kwargs=kwargs, epochs_per_round=2)
    _trainer(tmp_path, al).fit(HFTokenClassifier(_bert("Token"), lr=3e-3), datamodule=dm)
    words = [row["labelled_tokens"] for row in al.curve]
    steps = [b - a for a, b in itertools.pairwise(words)]
    assert words[-1] >= 90 and len(steps) >= 2 and all(s >= 30 for s in steps[:-1])  # the last one is the rest
    assert words[0] == sum(len(sentences[i]) for i in dm.labelled_indices if dm.labelled_round[i] == 0)
    assert 0.0 <= al.curve[-1]["val_acc"] <= 1.0 and al.curve[-1]["val_acc"] > 0.6  # O is about 5/9 of the words


def test_sequence_classifier_campaign_with_bald(tmp_path):
    tokenizer = _tokenizer()
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(4)) for _ in range(60)]
    labels = [int("berlin" in t or "paris" in t) for t in texts]
    dm = ActiveLearningDataModule(
        HFTextDataset(texts, labels, tokenizer),
        val=HFTextDataset(texts[:20], labels[:20], tokenizer),
        collate_fn=HFCollator(tokenizer.pad_token_id),
        label_field="labels",
        initial_labelled=10,
        batch_size=10,
    )
    model = HFSequenceClassifier(_bert("Sequence", num_labels=2), lr=3e-3)
    batch = HFCollator(0)([dm_item for dm_item in HFTextDataset(texts[:3], labels[:3], tokenizer)])
    assert model.pool_logits(batch).shape == (3, 2) and model.mc_logits(batch, 4)[0].shape == (4, 3, 2)
    al = ActiveLearning("bald", query_size=10, budget=30, strategy_kwargs={"n_samples": 3})
    _trainer(tmp_path, al).fit(model, datamodule=dm)
    assert al.finished and [row["labelled"] for row in al.curve] == [10, 20, 30]
    assert "val_acc" in al.curve[-1]


def test_bad_input():
    with pytest.raises(ValueError, match="model: expected a transformers model"):
        HFTokenClassifier("bert-base-cased")  # type: ignore[arg-type]
    model = HFTokenClassifier(_bert("Token"))
    with pytest.raises(ValueError, match="batch: HFTokenClassifier needs word_starts"):
        model.pool_logits({"input_ids": torch.tensor([[2, 3]])})
    with pytest.raises(ValueError, match="labels: got 1 labels for 2 texts"):
        HFTextDataset(["a", "b"], [0], _tokenizer())
