"""Compatibility module: the readers now live in :mod:`trinity_lightning.data.tables` (tables and
tensors) and :mod:`trinity_lightning.data.conll` (token-tagging corpora); import from
:mod:`trinity_lightning.data`.
"""

from trinity_lightning.data.conll import TaggedSentence, read_conll, read_tagged_sentences
from trinity_lightning.data.tables import TABLE_SUFFIXES, ArrayDataset, load_tensors, read_table

__all__ = [
    "TABLE_SUFFIXES",
    "ArrayDataset",
    "TaggedSentence",
    "load_tensors",
    "read_conll",
    "read_table",
    "read_tagged_sentences",
]
