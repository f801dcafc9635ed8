"""Token-tagging corpora: CoNLL column files and Hugging Face datasets with token/tag columns.

:func:`read_conll` and :func:`read_tagged_sentences` give :class:`TaggedSentence` lists. Every
validation error is a :class:`~trinity_lightning.data.errors.DataFormatError` naming the file, the
line (or row) and the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trinity_lightning.data.errors import DataFormatError, text_lines
from trinity_lightning.data.tables import _describe, _location, read_table


@dataclass(frozen=True)
class TaggedSentence:
    """One sentence of a token-tagging corpus.

    Attributes:
        tokens: the words.
        tags: one tag per word (e.g. IOB2 ``B-PER``/``I-PER``/``O``), or ``()`` for an untagged sentence
            (a tokens-only file: text still to be labelled).

    Example:
        >>> s = TaggedSentence(("John", "lives", "in", "Paris"), ("B-PER", "O", "O", "B-LOC"))
        >>> len(s.tokens) == len(s.tags), s.tagged, TaggedSentence(("Hello",), ()).tagged
        (True, True, False)
    """

    tokens: tuple[str, ...]
    tags: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def tagged(self) -> bool:
        """Whether the sentence carries its tags (``False`` for a sentence of a tokens-only file)."""
        return len(self.tags) > 0


def _field_name(index: int, columns: int, tag_column: int) -> str:
    """``token``, ``tag`` or ``column <k>`` for field ``index`` of a line with ``columns`` fields."""
    if index == 0:
        return "token"
    if columns > 1 and index == tag_column % columns:
        return "tag"
    return f"column {index + 1}"


def read_conll(
    path: str | Path,
    *,
    tag_column: int = -1,
    tag_set: Sequence[str] | None = None,
    skip_docstart: bool = True,
    tagged: bool | None = None,
) -> list[TaggedSentence]:
    """Read a CoNLL column file: one token per line, whitespace-separated columns, blank line between
    sentences; ``-DOCSTART-`` lines are document breaks.

    A file with a single column is *tokens only* (text still to be labelled): its sentences have
    ``tags == ()``. The file must be UTF-8; a leading byte-order mark is ignored.

    Args:
        path: the file.
        tag_column: which column holds the tag (default: the last one).
        tag_set: if given, tags outside it raise an error naming the line.
        skip_docstart: treat ``-DOCSTART-`` lines as sentence breaks.
        tagged: ``True``: every token line must carry a tag; ``False``: read only the tokens (first
            column) even when there are more columns; ``None`` (default): tokens only when the first
            token line has a single column.

    Raises:
        DataFormatError: a line whose number of columns differs from the file's first token line, an
            unknown tag, invalid UTF-8, naming the file, the line and the field.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.conll"
        >>> _ = p.write_text("EU B-ORG\\nrejects O\\n\\nPeter B-PER\\n")
        >>> [s.tags for s in read_conll(p)]
        [('B-ORG', 'O'), ('B-PER',)]
        >>> _ = p.write_text("Hello\\nworld\\n")
        >>> [(s.tokens, s.tags) for s in read_conll(p)]
        [(('Hello', 'world'), ())]
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    allowed = set(tag_set) if tag_set is not None else None
    sentences: list[TaggedSentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    width: int | None = None
    with_tags = tagged
    first: list[int] = []  # the first token line's width, once known (names the field of a bad byte)

    def name(index: int, count: int) -> str:
        return _field_name(index, first[0] if first else count, tag_column)

    for number, text in text_lines(path, field_names=name):
        parts = text.split()
        if not parts or (skip_docstart and parts[0] == "-DOCSTART-"):
            if tokens:
                sentences.append(TaggedSentence(tuple(tokens), tuple(tags)))
                tokens, tags = [], []
            continue
        if width is None:
            width = len(parts)
            first.append(width)
            if with_tags is None:
                with_tags = width >= 2
            if with_tags and width < 2:
                raise DataFormatError(
                    "a token line needs at least 2 columns (token and tag); "
                    "pass tagged=False (tags=... in ConllDataModule) for a tokens-only file",
                    source=path,
                    line=number,
                    field="columns",
                )
        elif len(parts) != width:
            raise DataFormatError(
                f"expected {width} columns, got {len(parts)} (the first token line has {width})",
                source=path,
                line=number,
                field="columns",
            )
        tokens.append(parts[0])
        if with_tags:
            tag = parts[tag_column]
            if allowed is not None and tag not in allowed:
                raise DataFormatError(
                    f"unknown tag {tag!r}; the tag set is {sorted(allowed)}", source=path, line=number, field="tag"
                )
            tags.append(tag)
    if tokens:
        sentences.append(TaggedSentence(tuple(tokens), tuple(tags)))
    return sentences


def read_tagged_sentences(
    source: Any,
    *,
    tokens_field: str = "tokens",
    tags_field: str = "ner_tags",
    split: str | None = None,
    tag_set: Sequence[str] | None = None,
) -> list[TaggedSentence]:
    """Token-tagging sentences from a CoNLL file or a HF dataset with token and tag columns.

    Tag ids of a HF ``ClassLabel`` sequence are turned back into their names.

    Example:
        >>> read_tagged_sentences({"tokens": [["EU", "rejects"]], "ner_tags": [["B-ORG", "O"]]})[0].tags
        ('B-ORG', 'O')
    """
    if isinstance(source, (str, Path)) and Path(source).suffix.lower() not in (".jsonl", ".parquet"):
        return read_conll(source, tag_set=tag_set)
    names: list[str] | None = None
    try:
        import datasets as hf

        if isinstance(source, hf.DatasetDict):
            source = source[split] if split else source[next(iter(source))]
        if isinstance(source, hf.Dataset):
            feature = source.features.get(tags_field)
            inner = getattr(feature, "feature", None)
            names = list(getattr(inner, "names", None) or []) or None
    except ImportError:  # pragma: no cover
        pass
    frame = read_table(source, split=split)
    where = _describe(source)
    for column in (tokens_field, tags_field):
        if column not in frame.columns:
            raise DataFormatError(f"missing column; columns are {list(frame.columns)}", source=where, field=column)
    allowed = set(tag_set) if tag_set is not None else None
    sentences = []
    for row, (toks, tgs) in enumerate(zip(frame[tokens_field], frame[tags_field])):
        toks, tgs = list(toks), list(tgs)
        if len(toks) != len(tgs):
            raise DataFormatError(
                f"ragged sequence: {len(toks)} tokens but {len(tgs)} tags",
                source=where,
                field=tags_field,
                **_location(frame, row),
            )
        if names is not None:
            tgs = [names[int(t)] for t in tgs]
        tgs = [str(t) for t in tgs]
        if allowed is not None:
            for t in tgs:
                if t not in allowed:
                    raise DataFormatError(f"unknown tag {t!r}", source=where, field=tags_field, **_location(frame, row))
        sentences.append(TaggedSentence(tuple(str(t) for t in toks), tuple(tgs)))
    return sentences
