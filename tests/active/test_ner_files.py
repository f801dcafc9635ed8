"""NER files as users have them (issue 14 items 17 and 18): tokens-only pools, empty files, bad bytes, BOMs."""

from __future__ import annotations

import pytest
import torch

from trinity_lightning.active import FileOracle
from trinity_lightning.active.ner import ConllDataModule
from trinity_lightning.data import DataFormatError, read_conll

TRAIN = (
    "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n"
)
DEV = "Paris NNP B-NP B-LOC\nis VBZ B-VP O\n\nBonn NNP B-NP B-LOC\n"
POOL = "Anna\nmet\nBob\n\nThey\nwent\nto\nOslo\n\nHello\n"


def _files(tmp_path, **texts):
    paths = {}
    for name, text in texts.items():
        path = tmp_path / f"{name}.txt"
        path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text, encoding="utf-8")
        paths[name] = str(path)
    return paths


def _dm(paths, **kwargs):
    kwargs.setdefault("batch_size", 2)
    return ConllDataModule(paths["train"], paths.get("dev", "none"), paths.get("test", "none"), **kwargs)


# ------------------------------------------------------------------------------------------ item 18
def test_unknown_tag_in_dev_names_file_and_line(tmp_path):
    paths = _files(tmp_path, train=TRAIN, dev=DEV)
    dm = _dm(paths, tags=["O", "B-ORG", "B-PER", "I-PER"])
    with pytest.raises(DataFormatError, match=r"dev.txt, line 1, field 'tag': unknown tag 'B-LOC'"):
        dm.setup("fit")


def test_empty_training_file_is_named_as_empty(tmp_path):
    paths = _files(tmp_path, train="-DOCSTART- -X- -X- O\n\n", dev=DEV)
    with pytest.raises(DataFormatError, match=r"train.txt: no sentences in the train file \(empty"):
        _dm(paths).setup("fit")
    paths = _files(tmp_path, train="", dev=DEV)
    with pytest.raises(DataFormatError, match=r"no sentences in the train file"):
        _dm(paths).setup("fit")


def test_invalid_utf8_is_a_data_format_error_with_file_line_and_field(tmp_path):
    latin1 = TRAIN.replace("Peter", "Jos\xe9").encode("latin-1")
    paths = _files(tmp_path, train=latin1, dev=DEV)
    with pytest.raises(DataFormatError, match=r"train.txt, line 6, field 'token': not valid UTF-8 \(byte 0xe9"):
        _dm(paths).setup("fit")
    bad_tag = DEV.encode().replace(b"B-LOC\nis", b"B-L\xffC\nis")
    paths = _files(tmp_path, train=TRAIN, dev=bad_tag)
    with pytest.raises(DataFormatError, match=r"dev.txt, line 1, field 'tag': not valid UTF-8"):
        _dm(paths).setup("fit")
    pos = TRAIN.encode().replace(b"VBZ", b"V\xffZ")
    with pytest.raises(DataFormatError, match=r"line 4, field 'column 2': not valid UTF-8"):
        read_conll(_files(tmp_path, train=pos)["train"])


def test_a_byte_order_mark_is_not_part_of_the_first_token(tmp_path):
    paths = _files(tmp_path, train=b"\xef\xbb\xbf" + b"EU B-ORG\nrejects O\n")
    sentences = read_conll(paths["train"])
    assert sentences[0].tokens == ("EU", "rejects")
    pool = _files(tmp_path, train=b"\xef\xbb\xbfHello\nworld\n")
    assert read_conll(pool["train"])[0].tokens == ("Hello", "world")


def test_small_train_limit_keeps_every_tag_of_every_split(tmp_path):
    """A dev tag unseen in the first train_limit pool sentences is in the tag set (the scheme, not the sample)."""
    paths = _files(tmp_path, train=TRAIN, dev=DEV, test=DEV)
    dm = _dm(paths, train_limit=1, initial_labelled=1)
    dm.setup("fit")
    assert dm.tag_names == ["O", "B-LOC", "B-ORG", "B-PER", "I-PER"]
    assert len(dm.dataset) == 1 and dm.num_classes == 5
    batch = next(iter(dm.val_dataloader()))
    assert batch["tags"][0, 0].item() == dm.tag_names.index("B-LOC")


def test_dev_and_test_limits_cut_each_split_on_its_own(tmp_path):
    """val_limit/test_limit override eval_limit per split: a cheap dev split for epoch choice, the whole test."""
    dev = DEV + "\nRome NNP B-NP B-LOC\n"  # 3 sentences
    paths = _files(tmp_path, train=TRAIN, dev=dev, test=dev)
    sizes = {}
    for name, kwargs in {
        "none": {},
        "eval": {"eval_limit": 2},
        "val": {"val_limit": 1},
        "val_and_eval": {"val_limit": 1, "eval_limit": 2},
        "test": {"test_limit": 2, "eval_limit": 1},
    }.items():
        dm = _dm(paths, initial_labelled=1, **kwargs)
        dm.setup("fit")
        sizes[name] = (len(dm.val_set), len(dm.test_set))
    assert sizes == {"none": (3, 3), "eval": (2, 2), "val": (1, 3), "val_and_eval": (1, 2), "test": (1, 2)}
    with pytest.raises(ValueError, match=r"test_limit: expected a positive number of sentences or None \(all\), got 0"):
        _dm(paths, test_limit=0)


# ------------------------------------------------------------------------------------------ item 17
def test_tokens_only_pool_is_labelled_from_zero_with_the_full_tag_set(tmp_path):
    paths = _files(tmp_path, train=POOL, dev=DEV)
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    dm = _dm(paths, tags=tags, initial_labelled=0)
    dm.setup("fit")
    assert dm.tag_names == tags and dm.n_labelled == 0 and dm.n_pool == 3
    assert dm.dataset.sentences[0].tokens == ("Anna", "met", "Bob")
    oracle = FileOracle(str(tmp_path / "questions"), wait=False)
    assert oracle._choices(dm) == tags  # the annotator chooses among every tag, not ['O']
    with pytest.raises(ValueError, match=r"sentences \[0\] come from a tokens-only file"):
        dm.label([0])
    dm.label([0, 2], labels=[[1, 0, 1], [0]])
    assert dm.n_labelled == 2 and dm.labelled_cost == 4
    batch = next(iter(dm.train_dataloader()))
    got = {tuple(t[m].tolist()) for t, m in zip(batch["tags"], batch["mask"])}
    assert got == {(1, 0, 1), (0,)}


def test_tokens_only_pool_refusals_say_what_to_do(tmp_path):
    paths = _files(tmp_path, train=POOL, dev=DEV)
    with pytest.raises(ValueError, match=r"holds tokens only, so the tag set is unknown; pass tags="):
        _dm(paths).setup("fit")
    with pytest.raises(ValueError, match=r"initial_labelled: .* no tags to reveal"):
        _dm(paths, tags=["O", "B-LOC"], initial_labelled=2).setup("fit")
    with pytest.raises(DataFormatError, match=r"train.txt: the dev file must be tagged"):
        ConllDataModule(paths["train"], paths["train"], "none", tags=["O"]).setup("fit")
    with pytest.raises(ValueError, match="tags: expected distinct tag names"):
        ConllDataModule(paths["train"], tags=["O", "O"])
    two_columns = _files(tmp_path, train="Hello\nworld O\n")
    with pytest.raises(DataFormatError, match=r"line 2, field 'columns': expected 1 columns"):
        read_conll(two_columns["train"])
    with pytest.raises(DataFormatError, match=r"line 1, field 'columns': a token line needs at least 2 columns"):
        read_conll(_files(tmp_path, train=POOL)["train"], tagged=True)


def test_seed_file_gives_the_tag_set_and_starts_labelled(tmp_path):
    paths = _files(tmp_path, train=POOL, seed=TRAIN)
    dm = ConllDataModule(paths["train"], "none", "none", seed_path=paths["seed"], batch_size=4)
    dm.setup("fit")
    assert dm.tag_names == ["O", "B-ORG", "B-PER", "I-PER"]
    assert dm.labelled_indices == [3, 4] and dm.pool_indices == [0, 1, 2]
    batch = next(iter(dm.train_dataloader()))
    assert batch["words"].shape[0] == 2 and torch.equal(batch["mask"].sum(1).sort().values, torch.tensor([2, 2]))
    assert dm.val_set is None and dm.test_set is None
