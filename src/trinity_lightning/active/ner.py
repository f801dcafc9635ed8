"""Token-tagging data for active learning: vocabularies, a tensor dataset of sentences, padding, CoNLL.

:class:`ConllDataModule` is an :class:`~trinity_lightning.active.ActiveLearningDataModule` over
CoNLL-2003 (from the shared data folder) or any CoNLL column files; the annotation cost of a sentence
is its number of words, so budgets can be given in words as in Shen et al. (2018).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from trinity_lightning.active.datamodule import ActiveLearningDataModule
from trinity_lightning.data import TaggedSentence, load_conll2003, read_conll

__all__ = ["ConllDataModule", "TaggedDataset", "Vocabulary", "collate_tagged", "sentence_length"]

_DIGITS = re.compile(r"\d")


def _normalize(word: str) -> str:
    return _DIGITS.sub("0", word.lower())


class Vocabulary:
    """Word (lower-cased, digits -> 0), character and tag ids built from training sentences.

    Word id 0 is padding and 1 unknown; character id 0 is padding and 1 unknown.

    Example:
        >>> v = Vocabulary.build([TaggedSentence(["EU", "rejects"], ["B-ORG", "O"])])
        >>> v.tag_names, v.word_ids(["eu", "Unseen"])
        (['O', 'B-ORG'], [2, 1])
    """

    def __init__(self, words: Sequence[str], chars: Sequence[str], tag_names: Sequence[str]) -> None:
        self.words = ["<pad>", "<unk>", *words]
        self.chars = ["<pad>", "<unk>", *chars]
        self.tag_names = list(tag_names)
        self._word = {w: i for i, w in enumerate(self.words)}
        self._char = {c: i for i, c in enumerate(self.chars)}
        self._tag = {t: i for i, t in enumerate(self.tag_names)}

    @classmethod
    def build(
        cls, sentences: Sequence[TaggedSentence], min_count: int = 1, tag_names: Sequence[str] | None = None
    ) -> Vocabulary:
        """Collect the vocabularies of ``sentences`` (words seen at least ``min_count`` times)."""
        counts = Counter(_normalize(w) for s in sentences for w in s.tokens)
        chars = sorted({c for s in sentences for w in s.tokens for c in w})
        if tag_names is None:
            seen = {t for s in sentences for t in s.tags}
            tag_names = ["O", *sorted(seen - {"O"}, key=lambda t: (t.partition("-")[2], t))]
        words = sorted(w for w, c in counts.items() if c >= min_count)
        return cls(words, chars, tag_names)

    def word_ids(self, tokens: Sequence[str]) -> list[int]:
        return [self._word.get(_normalize(t), 1) for t in tokens]

    def char_ids(self, token: str) -> list[int]:
        return [self._char.get(c, 1) for c in token] or [1]

    def tag_ids(self, tags: Sequence[str]) -> list[int]:
        try:
            return [self._tag[t] for t in tags]
        except KeyError as err:
            raise ValueError(f"tags: unknown tag {err.args[0]!r}; known tags are {self.tag_names}") from None


class TaggedDataset(Dataset):
    """Sentences as tensors: items are dicts ``{"words": (T,), "chars": (T, L), "tags": (T,)}``.

    Example:
        >>> s = [TaggedSentence(["EU", "rejects"], ["B-ORG", "O"])]
        >>> ds = TaggedDataset(s, Vocabulary.build(s)); ds[0]["chars"].shape
        torch.Size([2, 7])
    """

    def __init__(self, sentences: Sequence[TaggedSentence], vocab: Vocabulary, max_word_length: int = 20) -> None:
        self.sentences = list(sentences)
        self.vocab = vocab
        self.items = []
        for s in self.sentences:
            chars = [vocab.char_ids(t)[:max_word_length] for t in s.tokens]
            width = max(len(c) for c in chars)
            char_tensor = torch.zeros(len(chars), width, dtype=torch.long)
            for i, c in enumerate(chars):
                char_tensor[i, : len(c)] = torch.tensor(c)
            self.items.append(
                {
                    "words": torch.tensor(vocab.word_ids(s.tokens)),
                    "chars": char_tensor,
                    "tags": torch.tensor(vocab.tag_ids(s.tags)),
                }
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.items[index]


def sentence_length(item: dict[str, torch.Tensor]) -> int:
    """Annotation cost of a sentence item: its number of words."""
    return len(item["words"])


def collate_tagged(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Pad a list of sentence items into a batch dict with ``words``, ``chars``, ``tags`` and ``mask``.

    Example:
        >>> ones = torch.ones(2, 3, dtype=torch.long)
        >>> a = {"words": torch.tensor([2, 3]), "chars": ones, "tags": torch.tensor([0, 1])}
        >>> b = {"words": torch.tensor([4]), "chars": torch.ones(1, 5, dtype=torch.long), "tags": torch.tensor([1])}
        >>> batch = collate_tagged([a, b]); batch["chars"].shape, batch["mask"].tolist()
        (torch.Size([2, 2, 5]), [[True, True], [True, False]])
    """
    n = len(items)
    t = max(len(i["words"]) for i in items)
    length = max(i["chars"].shape[1] for i in items)
    words = torch.zeros(n, t, dtype=torch.long)
    chars = torch.zeros(n, t, length, dtype=torch.long)
    tags = torch.zeros(n, t, dtype=torch.long)
    for k, item in enumerate(items):
        m = len(item["words"])
        words[k, :m] = item["words"]
        chars[k, :m, : item["chars"].shape[1]] = item["chars"]
        tags[k, :m] = torch.as_tensor(item["tags"])
    return {"words": words, "chars": chars, "tags": tags, "mask": words != 0}


class ConllDataModule(ActiveLearningDataModule):
    """Active learning over CoNLL column files (default: CoNLL-2003 English from the shared data).

    The pool is the training split; ``val``/``test`` are the dev and test splits. The vocabulary is
    built from the training split (its words are visible to the learner, only its tags are hidden).

    Args:
        train_path: CoNLL file of the pool (default: shared ``conll2003`` train).
        val_path: CoNLL file of the validation set (default: shared dev; ``"test"`` uses the test split).
        test_path: CoNLL file of the test set (default: shared test).
        train_limit: keep only the first ``train_limit`` training sentences (quick runs).
        eval_limit: keep only the first ``eval_limit`` dev/test sentences.
        **kwargs: :class:`ActiveLearningDataModule` arguments (``initial_labelled``, ``batch_size``...).

    Example:
        >>> dm = ConllDataModule(train_limit=200, eval_limit=50, initial_labelled=0.05)  # doctest: +SKIP
        >>> dm.setup(); dm.n_labelled, dm.labelled_cost  # doctest: +SKIP
        (10, 138)
    """

    def __init__(
        self,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        train_limit: int | None = None,
        eval_limit: int | None = None,
        **kwargs: Any,
    ) -> None:
        # LightningCLI passes every inherited argument, so None/-1 mean "not given" here
        if kwargs.get("collate_fn") is None:
            kwargs["collate_fn"] = collate_tagged
        if kwargs.get("cost_fn") is None:
            kwargs["cost_fn"] = sentence_length
        if kwargs.get("label_field", -1) == -1:
            kwargs["label_field"] = "tags"
        super().__init__(**kwargs)
        self.train_path, self.val_path, self.test_path = train_path, val_path, test_path
        self.train_limit, self.eval_limit = train_limit, eval_limit
        self.vocab: Vocabulary | None = None

    def _read(self, path: str | None, split: str, limit: int | None) -> list[TaggedSentence]:
        if path is None or path in ("train", "dev", "test"):
            sentences = load_conll2003(path or split)
        else:
            sentences = read_conll(path)
        return sentences[:limit] if limit is not None else sentences

    def load(self) -> tuple[Dataset, Dataset | None, Dataset | None, Dataset | None]:
        train = self._read(self.train_path, "train", self.train_limit)
        val = self._read(self.val_path, "dev", self.eval_limit)
        test = self._read(self.test_path, "test", self.eval_limit)
        self.vocab = Vocabulary.build(train)
        self.num_classes = len(self.vocab.tag_names)
        return TaggedDataset(train, self.vocab), TaggedDataset(val, self.vocab), TaggedDataset(test, self.vocab), None

    @property
    def num_words(self) -> int | None:
        return len(self.vocab.words) if self.vocab else None

    @property
    def num_chars(self) -> int | None:
        return len(self.vocab.chars) if self.vocab else None

    @property
    def tag_names(self) -> list[str] | None:
        return self.vocab.tag_names if self.vocab else None
