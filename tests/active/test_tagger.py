import lightning.pytorch as pl
import pytest
import torch

from trinity_lightning.active import ActiveLearning
from trinity_lightning.active.ner import ConllDataModule, TaggedDataset, Vocabulary, collate_tagged
from trinity_lightning.active.scoring import score_pool
from trinity_lightning.active.strategies import BALD, MNLP
from trinity_lightning.data import TaggedSentence
from trinity_lightning.models.tagger import CNNCNNLSTM, EntityF1, Tagger, entity_spans


@pytest.mark.parametrize(
    ("tags", "spans"),
    [
        (["B-PER", "I-PER", "O"], {("PER", 0, 2)}),
        (["I-PER", "I-PER"], {("PER", 0, 2)}),  # I- after O starts an entity (conlleval)
        (["B-PER", "B-PER"], {("PER", 0, 1), ("PER", 1, 2)}),
        (["B-PER", "I-LOC"], {("PER", 0, 1), ("LOC", 1, 2)}),  # type change splits
        (["O", "B-ORG", "I-ORG", "I-ORG"], {("ORG", 1, 4)}),
        (["S-LOC", "B-PER", "E-PER", "O"], {("LOC", 0, 1), ("PER", 1, 3)}),  # BIOES
        (["O", "O"], set()),
        ([], set()),
    ],
)
def test_entity_spans_conll_rules(tags, spans):
    assert entity_spans(tags) == spans


def test_entity_f1_exact_span_and_type():
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    f1 = EntityF1(names)
    gold = torch.tensor([[1, 2, 0, 3, 0], [3, 4, 4, 0, 0]])
    pred = torch.tensor([[1, 2, 0, 1, 0], [3, 4, 0, 0, 3]])  # right, wrong type, short span; plus a padded token
    mask = torch.tensor([[True] * 5, [True, True, True, True, False]])
    f1.update(pred, gold, mask)
    # gold: PER(0,2) LOC(3,4) | LOC(0,3); pred: PER(0,2) PER(3,4) | LOC(0,2) -> 1 correct, 3 predicted, 3 gold
    assert f1.correct.item() == 1 and f1.predicted.item() == 3 and f1.gold.item() == 3
    assert f1.compute().item() == pytest.approx(1 / 3)


def _toy_sentences(n=64):
    g = torch.Generator().manual_seed(0)
    names, others = ["Anna", "Bob", "Carl", "Dora"], ["the", "went", "to", "and", "saw"]
    cities = ["Paris", "Rome", "Oslo"]
    out = []
    for _ in range(n):
        toks, tags = [], []
        for _ in range(int(torch.randint(3, 8, (1,), generator=g))):
            r = int(torch.randint(0, 10, (1,), generator=g))
            if r < 2:
                toks += [names[r], "Smith"]
                tags += ["B-PER", "I-PER"]
            elif r < 4:
                toks.append(cities[r - 2])
                tags.append("B-LOC")
            else:
                toks.append(others[r % 5])
                tags.append("O")
        out.append(TaggedSentence(toks, tags))
    return out


def test_tagger_learns_toy_ner_and_scores_pool():
    torch.manual_seed(0)
    sents = _toy_sentences()
    vocab = Vocabulary.build(sents)
    ds = TaggedDataset(sents, vocab)
    loader = torch.utils.data.DataLoader(ds, batch_size=16, collate_fn=collate_tagged, shuffle=True)
    tagger = Tagger(
        len(vocab.words),
        len(vocab.chars),
        vocab.tag_names,
        lr=1e-2,
        net_kwargs={"word_channels": [32], "hidden": 32, "char_channels": 16, "word_dim": 16},
    )
    trainer = pl.Trainer(
        max_epochs=8, logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False
    )
    eval_loader = torch.utils.data.DataLoader(ds, batch_size=64, collate_fn=collate_tagged)
    trainer.fit(tagger, loader, eval_loader)
    assert trainer.callback_metrics["val_f1"].item() > 0.9
    batch = next(iter(eval_loader))
    logits, mask = tagger.pool_logits(batch)
    assert logits.shape[:2] == mask.shape
    mc, _ = tagger.mc_logits(batch, 3)
    assert mc.shape == (3, *logits.shape)
    sel = score_pool(tagger, [batch], BALD(n_samples=3), 5, list(range(len(ds))))
    assert len(sel.indices) == 5
    sel = score_pool(tagger, [batch], MNLP(), 5, list(range(len(ds))))
    assert sel.scores == sorted(sel.scores, reverse=True)


def test_net_errors_and_no_dropout_bald():
    with pytest.raises(ValueError, match="kernel_size"):
        CNNCNNLSTM(10, 10, 3, kernel_size=2)
    with pytest.raises(ValueError, match="num_tags"):
        CNNCNNLSTM(10, 10, 0)
    tagger = Tagger(10, 10, ["O", "B-X"], net_kwargs={"dropout": 0.0, "word_channels": [4], "hidden": 4})
    batch = collate_tagged(
        [{"words": torch.tensor([2]), "chars": torch.ones(1, 2, dtype=torch.long), "tags": torch.tensor([0])}]
    )
    with pytest.raises(ValueError, match="dropout"):
        tagger.mc_logits(batch, 2)


def _write_conll(path, sentences):
    lines = []
    for s in sentences:
        lines += [f"{t} NN O {g}" for t, g in zip(s.tokens, s.tags)] + [""]
    path.write_text("-DOCSTART- -X- -X- O\n\n" + "\n".join(lines))


def test_conll_datamodule_token_campaign(tmp_path):
    sents = _toy_sentences(80)
    for name, part in (("train", sents[:60]), ("dev", sents[60:70]), ("test", sents[70:])):
        _write_conll(tmp_path / f"{name}.txt", part)
    dm = ConllDataModule(
        str(tmp_path / "train.txt"),
        str(tmp_path / "dev.txt"),
        str(tmp_path / "test.txt"),
        initial_labelled=6,
        batch_size=8,
    )
    torch.manual_seed(0)
    tagger = Tagger(net_kwargs={"word_channels": [16], "hidden": 16, "char_channels": 8, "word_dim": 8})
    al = ActiveLearning("mnlp", query_size=40, budget=150, unit="tokens", curve_path=str(tmp_path / "c.csv"))
    trainer = pl.Trainer(
        max_epochs=-1,
        callbacks=[al],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(tagger, datamodule=dm)
    assert dm.tag_names == ["O", "B-LOC", "B-PER", "I-PER"] and tagger.net is not None
    assert 150 <= dm.labelled_cost < 150 + 12 and al.finished
    assert all("val_f1" in row for row in al.curve)
