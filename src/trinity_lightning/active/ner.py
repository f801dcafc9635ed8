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
from trinity_lightning.data import DataFormatError, TaggedSentence, dataset_dir, read_conll

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
            seen = {t for s in sentences for t in s.tags}  # untagged sentences add no tags
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

    An untagged sentence (from a tokens-only file) gets placeholder tags (id 0) and ``tagged[i] = False``:
    its real tags must come from an annotator.

    Example:
        >>> s = [TaggedSentence(["EU", "rejects"], ["B-ORG", "O"])]
        >>> ds = TaggedDataset(s, Vocabulary.build(s)); ds[0]["chars"].shape
        torch.Size([2, 7])
    """

    def __init__(self, sentences: Sequence[TaggedSentence], vocab: Vocabulary, max_word_length: int = 20) -> None:
        self.sentences = list(sentences)
        self.vocab = vocab
        self.items = []
        self.tagged = [s.tagged for s in self.sentences]
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
                    "tags": torch.tensor(vocab.tag_ids(s.tags) if s.tagged else [0] * len(s.tokens)),
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
    built from the pool (its words are visible to the learner, only its tags are hidden).

    **Labelling new text.** The pool file may hold tokens only (one column): then nobody knows its tags
    and an annotator supplies them (``FileOracle`` / ``trinity label``), starting from
    ``initial_labelled=0``. The annotator's choices are the tag set: ``tags=[...]``, or the tags of a
    labelled seed file (``seed_path``, whose sentences join the labelled set before the first round).

    **The tag set** is ``tags`` when given (a tag outside it in any file is an error naming the file and
    the line); otherwise it is every tag found in the pool, the seed, the dev and the test files, read
    in full before ``train_limit``/``eval_limit`` cut them. The tag set is part of the annotation scheme,
    not of what was labelled so far: a small ``train_limit`` never makes a dev tag "unknown".

    Args:
        train_path: CoNLL file of the pool (default: shared ``conll2003`` train); tokens only is allowed.
        val_path: CoNLL file of the validation set (default: shared dev; ``"test"`` uses the test split;
            ``"none"``: no validation set).
        test_path: CoNLL file of the test set (default: shared test; ``"none"``: no test set).
        train_limit: keep only the first ``train_limit`` pool sentences (quick runs).
        eval_limit: keep only the first ``eval_limit`` dev/test sentences.
        val_limit: keep only the first ``val_limit`` dev sentences (overrides ``eval_limit`` for dev).
        test_limit: keep only the first ``test_limit`` test sentences (overrides ``eval_limit`` for test), e.g.
            ``val_limit=500`` with no ``eval_limit``/``test_limit``: a cheap dev split, the whole test split.
        tags: the tag set, in id order (e.g. ``["O", "B-PER", "I-PER"]``); required for a tokens-only pool
            without a seed file.
        seed_path: a CoNLL file of already labelled sentences, added after the pool sentences (dataset
            indices ``len(pool)...``) and labelled before the first round.
        **kwargs: :class:`ActiveLearningDataModule` arguments (``initial_labelled``, ``batch_size``...).

    Raises:
        DataFormatError: an empty file, an unknown tag, invalid UTF-8, a ragged line (file, line, field).
        ValueError: ``initial_labelled > 0`` on a tokens-only pool (there are no tags to reveal), or a
            tokens-only pool with neither ``tags`` nor a seed file.

    Example:
        >>> dm = ConllDataModule(train_limit=200, eval_limit=50, initial_labelled=0.05)  # doctest: +SKIP
        >>> dm.setup(); dm.n_labelled, dm.labelled_cost  # doctest: +SKIP
        (10, 138)
        >>> dm = ConllDataModule(train_limit=2000, val_limit=500)  # doctest: +SKIP
        >>> dm.setup(); len(dm.val_set), len(dm.test_set)  # doctest: +SKIP
        (500, 3453)
        >>> dm = ConllDataModule("new_text.txt", val_path="none", test_path="none",
        ...                      tags=["O", "B-PER", "I-PER"], initial_labelled=0)  # doctest: +SKIP
    """

    def __init__(
        self,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        train_limit: int | None = None,
        eval_limit: int | None = None,
        tags: Sequence[str] | None = None,
        seed_path: str | None = None,
        val_limit: int | None = None,
        test_limit: int | None = None,
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
        if tags is not None:
            tags = list(tags)
            if not tags or len(set(tags)) != len(tags):
                raise ValueError(f"tags: expected distinct tag names, got {tags}")
        self.train_path, self.val_path, self.test_path = train_path, val_path, test_path
        for name, limit in (
            ("train_limit", train_limit),
            ("eval_limit", eval_limit),
            ("val_limit", val_limit),
            ("test_limit", test_limit),
        ):
            if limit is not None and limit < 1:
                raise ValueError(f"{name}: expected a positive number of sentences or None (all), got {limit}")
        self.train_limit, self.eval_limit = train_limit, eval_limit
        self.val_limit, self.test_limit = val_limit, test_limit
        self.tags, self.seed_path = tags, seed_path
        self.vocab: Vocabulary | None = None
        self._tagged: list[bool] = []
        self._seed_indices: list[int] = []

    def _read(self, path: str | None, split: str) -> tuple[list[TaggedSentence], str]:
        """All sentences of a split (before any limit) and the file they came from."""
        if path is None or path in ("train", "dev", "test"):
            path = str(dataset_dir("conll2003") / f"{path or split}.txt")
        return read_conll(path, tag_set=self.tags), path

    def load(self) -> tuple[Dataset, Dataset | None, Dataset | None, Dataset | None]:
        splits: dict[str, tuple[list[TaggedSentence], str]] = {}
        for split, path in (("train", self.train_path), ("dev", self.val_path), ("test", self.test_path)):
            if split != "train" and path is not None and path.lower() == "none":
                continue
            splits[split] = self._read(path, split)
        if self.seed_path is not None:
            splits["seed"] = self._read(self.seed_path, "seed")
        for split, (sentences, source) in splits.items():
            if not sentences:
                raise DataFormatError(
                    f"no sentences in the {split} file (empty, or only blank and -DOCSTART- lines)", source=source
                )
        pool, pool_source = splits["train"]
        seed = splits["seed"][0] if "seed" in splits else []
        if "seed" in splits and not all(s.tagged for s in seed):
            raise DataFormatError("the seed file must be tagged (token and tag columns)", source=splits["seed"][1])
        for split in ("dev", "test"):
            if split in splits and not all(s.tagged for s in splits[split][0]):
                raise DataFormatError(
                    f"the {split} file must be tagged (token and tag columns)", source=splits[split][1]
                )
        untagged_pool = not pool[0].tagged
        if untagged_pool and self.tags is None and not seed:
            raise ValueError(
                f"tags: {pool_source} holds tokens only, so the tag set is unknown; pass tags=[...] "
                "(the annotator's choices) or a labelled seed file (seed_path=...)"
            )
        if untagged_pool and self.initial_labelled:
            raise ValueError(
                f"initial_labelled: {pool_source} holds tokens only, so there are no tags to reveal; use "
                "initial_labelled=0 (an annotator labels the first round) or seed_path=... for labelled sentences"
            )
        if self.tags is not None:
            tag_names = list(self.tags)
        else:  # every tag of every file: the annotation scheme, not the part labelled so far
            tag_names = Vocabulary.build([s for sentences, _ in splits.values() for s in sentences]).tag_names
        if self.train_limit is not None:
            pool = pool[: self.train_limit]
        vocab = self.vocab = Vocabulary.build([*pool, *seed], tag_names=tag_names)
        self.num_classes = len(tag_names)
        sentences = [*pool, *seed]
        self._tagged = [s.tagged for s in sentences]
        self._seed_indices = list(range(len(pool), len(sentences)))

        def evaluation(split: str) -> TaggedDataset | None:
            if split not in splits:
                return None
            part = splits[split][0]
            own = self.val_limit if split == "dev" else self.test_limit
            limit = own if own is not None else self.eval_limit
            return TaggedDataset(part[:limit] if limit is not None else part, vocab)

        return TaggedDataset(sentences, vocab), evaluation("dev"), evaluation("test"), None

    def setup(self, stage: str | None = None) -> None:
        fresh = self.dataset is None
        super().setup(stage)
        if fresh and self._seed_indices:
            new = [i for i in self._seed_indices if self._labelled_round[i] < 0]
            if new:
                self.label(new, advance_round=False)

    def label(self, indices: Sequence[int], labels: Sequence[Any] | None = None, advance_round: bool = True) -> None:
        """As :meth:`ActiveLearningDataModule.label`; sentences of a tokens-only pool need ``labels``."""
        if labels is None and self._tagged:
            untagged = [int(i) for i in indices if 0 <= int(i) < len(self._tagged) and not self._tagged[int(i)]]
            if untagged:
                raise ValueError(
                    f"labels: sentences {untagged[:5]} come from a tokens-only file and have no tags to reveal; "
                    "pass the annotator's tags (labels=...)"
                )
        super().label(indices, labels, advance_round)

    @property
    def num_words(self) -> int | None:
        return len(self.vocab.words) if self.vocab else None

    @property
    def num_chars(self) -> int | None:
        return len(self.vocab.chars) if self.vocab else None

    @property
    def tag_names(self) -> list[str] | None:
        return self.vocab.tag_names if self.vocab else None
