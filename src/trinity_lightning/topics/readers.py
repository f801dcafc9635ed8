"""Document-term counts from raw texts, bag-of-words / LDA-C files, SciPy sparse matrices and HF datasets.

Every reader returns a :class:`Corpus`: a SciPy CSR matrix of counts (documents × vocabulary) and the vocabulary.
Bad input raises :class:`~trinity_lightning.data.DataFormatError` naming the file and line, or ``ValueError``
naming the argument.
"""

from __future__ import annotations

import gzip
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from trinity_lightning.data import DataFormatError
from trinity_lightning.topics.moments import SparseBatch

__all__ = [
    "ENGLISH_STOP_WORDS",
    "Corpus",
    "as_counts",
    "iter_batches",
    "read_bow",
    "read_hf_texts",
    "read_ldac",
    "texts_to_counts",
    "tokenize",
]

# A compact English stop list (function words); pass your own with ``stop_words=``.
ENGLISH_STOP_WORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "also",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "said",
        "says",
        "say",
        "mr",
        "mrs",
        "ms",
        "one",
        "two",
        "new",
        "like",
        "get",
        "got",
        "also",
        "year",
        "years",
        "would",
        "could",
        "may",
        "might",
        "must",
        "shall",
        "us",
        "s",
        "t",
        "don",
        "didn",
        "doesn",
        "isn",
        "wasn",
    ]
)
_TOKEN = re.compile(r"[a-z][a-z']+")


@dataclass
class Corpus:
    """Counts (SciPy CSR, documents × vocabulary, integer-valued) and the vocabulary (term id -> word).

    Example:
        >>> c = texts_to_counts(["cats chase mice", "mice eat cheese", "cats eat mice"], stop_words=())
        >>> c.counts.shape, c.vocab[:3]
        ((3, 5), ['cats', 'chase', 'cheese'])
    """

    counts: sp.csr_matrix
    vocab: list[str]

    @property
    def n_docs(self) -> int:
        """Number of documents."""
        return int(self.counts.shape[0])


def tokenize(text: str) -> list[str]:
    """Lower-case alphabetic tokens of two or more letters (apostrophes kept inside words).

    Example:
        >>> tokenize("The cat's 3 toys, A-OK!")
        ['the', "cat's", 'toys', 'ok']
    """
    return _TOKEN.findall(text.lower())


def texts_to_counts(
    texts: Iterable[str],
    *,
    stop_words: Iterable[str] | None = None,
    min_df: int | float = 1,
    max_df: int | float = 1.0,
    max_features: int | None = None,
) -> Corpus:
    """Tokenize raw texts and count words: :func:`tokenize`, stop words, document-frequency limits, vocabulary cap.

    Args:
        texts: the documents.
        stop_words: words to drop (default :data:`ENGLISH_STOP_WORDS`; ``()`` keeps all).
        min_df: keep words in at least this many documents (an int) or this fraction of them (a float).
        max_df: keep words in at most this many documents (int) or fraction (float).
        max_features: keep only the most frequent words (by corpus count, ties by word).

    Raises:
        ValueError: empty input, or an empty vocabulary after filtering (names the filters).

    Example:
        >>> texts_to_counts(["red ball ball", "ball game"], stop_words=(), min_df=2).vocab
        ['ball']
    """
    stop = ENGLISH_STOP_WORDS if stop_words is None else frozenset(stop_words)
    docs = [Counter(w for w in tokenize(t or "") if w not in stop) for t in texts]
    n = len(docs)
    if n == 0:
        raise ValueError("texts is empty: no documents to count")
    df: Counter[str] = Counter()
    tf: Counter[str] = Counter()
    for d in docs:
        df.update(d.keys())
        tf.update(d)
    lo = min_df if isinstance(min_df, int) else int(np.ceil(min_df * n))
    hi = max_df if isinstance(max_df, int) else int(np.floor(max_df * n))
    words = [w for w, f in df.items() if lo <= f <= hi]
    if max_features is not None:
        words = sorted(words, key=lambda w: (-tf[w], w))[:max_features]
    words.sort()
    if not words:
        raise ValueError(
            f"empty vocabulary after filtering {n} documents ({len(df)} distinct words before filtering; "
            f"min_df={min_df}, max_df={max_df}, max_features={max_features}, {len(stop)} stop words). "
            "Loosen min_df/max_df or pass stop_words=()."
        )
    index = {w: i for i, w in enumerate(words)}
    rows, cols, vals = [], [], []
    for r, d in enumerate(docs):
        for w, c in d.items():
            j = index.get(w)
            if j is not None:
                rows.append(r)
                cols.append(j)
                vals.append(c)
    X = sp.csr_matrix((np.asarray(vals, np.float64), (rows, cols)), shape=(n, len(words)))
    return Corpus(X, words)


def _open_text(path: Path) -> Any:
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8")


def _read_vocab(vocab: str | Path | Sequence[str] | None, n_terms: int) -> list[str]:
    if vocab is None:
        return [f"w{i}" for i in range(n_terms)]
    if isinstance(vocab, (str, Path)):
        with _open_text(Path(vocab)) as fh:
            words = [line.strip() for line in fh if line.strip()]
    else:
        words = list(vocab)
    if len(words) < n_terms:
        raise DataFormatError(
            f"the vocabulary has {len(words)} words but the counts use term id {n_terms - 1}",
            source=str(vocab) if isinstance(vocab, (str, Path)) else "<vocab>",
        )
    return words


def read_ldac(path: str | Path, vocab: str | Path | Sequence[str] | None = None) -> Corpus:
    """Read an LDA-C ("Blei") file: one document per line, ``N id:count id:count ...`` (0-based term ids).

    ``.gz`` files are read compressed. ``vocab`` is a file with one word per line (line i = term id i) or a list.

    Raises:
        DataFormatError: a malformed line, naming the file and the 1-based line number.

    Example:
        >>> import tempfile, os
        >>> f = tempfile.NamedTemporaryFile("w", suffix=".ldac", delete=False)
        >>> _ = f.write("2 0:1 3:2\\n1 1:4\\n"); f.close()
        >>> read_ldac(f.name).counts.toarray().tolist()
        [[1.0, 0.0, 0.0, 2.0], [0.0, 4.0, 0.0, 0.0]]
        >>> os.unlink(f.name)
    """
    path = Path(path)
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    n_docs = 0
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                raise DataFormatError("empty line (an empty document is written '0')", source=path, line=lineno)
            try:
                n_terms = int(parts[0])
                pairs = [p.split(":") for p in parts[1:]]
                ids = [int(a) for a, _ in pairs]
                counts = [float(b) for _, b in pairs]
            except ValueError as err:
                raise DataFormatError(
                    f"expected '<n_terms> <term_id>:<count> ...', got {line.strip()[:60]!r} ({err})",
                    source=path,
                    line=lineno,
                ) from None
            if n_terms != len(ids):
                raise DataFormatError(
                    f"the line starts with {n_terms} terms but lists {len(ids)} id:count pairs",
                    source=path,
                    line=lineno,
                )
            bad = [c for c in counts if c < 0 or c != int(c)]
            if bad or any(i < 0 for i in ids):
                raise DataFormatError(
                    f"counts must be non-negative integers and term ids >= 0, got {line.strip()[:60]!r}",
                    source=path,
                    line=lineno,
                )
            rows.extend([n_docs] * len(ids))
            cols.extend(ids)
            vals.extend(counts)
            n_docs += 1
    n_terms_used = max(cols) + 1 if cols else 0
    words = _read_vocab(vocab, n_terms_used)
    X = sp.csr_matrix((np.asarray(vals, np.float64), (rows, cols)), shape=(n_docs, len(words)))
    X.sum_duplicates()
    return Corpus(X, words)


def read_bow(path: str | Path, vocab: str | Path | Sequence[str] | None = None) -> Corpus:
    """Read a UCI-style bag-of-words file: optional 3 header lines (D, W, NNZ), then ``doc word count`` triplets.

    Document and word ids are 1-based, as in the UCI "Bag of Words" data sets (``docword.*.txt``).

    Raises:
        DataFormatError: a malformed line, naming the file and the 1-based line number.

    Example:
        >>> import tempfile, os
        >>> f = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False)
        >>> _ = f.write("2\\n3\\n2\\n1 1 2\\n2 3 1\\n"); f.close()
        >>> read_bow(f.name).counts.toarray().tolist()
        [[2.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
        >>> os.unlink(f.name)
    """
    path = Path(path)
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    header: list[int] = []
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) == 1 and not rows and len(header) < 3:
                header.append(int(parts[0]))
                continue
            try:
                d, w, c = (int(x) for x in parts)
            except ValueError:
                raise DataFormatError(
                    f"expected '<doc_id> <word_id> <count>' (1-based ids), got {line.strip()[:60]!r}",
                    source=path,
                    line=lineno,
                ) from None
            if d < 1 or w < 1 or c < 0:
                raise DataFormatError(
                    f"ids must be >= 1 and counts >= 0, got {line.strip()!r}", source=path, line=lineno
                )
            rows.append(d - 1)
            cols.append(w - 1)
            vals.append(c)
    n_docs = max(header[0] if header else 0, max(rows, default=-1) + 1)
    n_terms = max(header[1] if len(header) > 1 else 0, max(cols, default=-1) + 1)
    words = _read_vocab(vocab, n_terms)
    X = sp.csr_matrix((np.asarray(vals, np.float64), (rows, cols)), shape=(n_docs, len(words)))
    X.sum_duplicates()
    return Corpus(X, words)


def read_hf_texts(dataset: Any, text_column: str = "text", **filters: Any) -> Corpus:
    """Counts from a Hugging Face ``datasets.Dataset`` (or any table with a text column).

    ``filters`` go to :func:`texts_to_counts` (``stop_words``, ``min_df``, ``max_df``, ``max_features``).

    Example:
        >>> import datasets
        >>> ds = datasets.Dataset.from_dict({"text": ["red apples", "green apples"]})
        >>> read_hf_texts(ds, stop_words=()).vocab
        ['apples', 'green', 'red']
    """
    names = getattr(dataset, "column_names", None)
    if names is not None and text_column not in names:
        raise ValueError(f"text_column={text_column!r} is not a column of the dataset; columns: {names}")
    return texts_to_counts(dataset[text_column], **filters)


def as_counts(X: Any, name: str = "X") -> sp.csr_matrix:
    """Validate and convert counts (SciPy sparse, NumPy array, torch tensor, :class:`Corpus`) to float64 CSR.

    Raises:
        ValueError: not 2-D, negative, non-integer or non-finite counts, or no documents / no words.

    Example:
        >>> as_counts(np.array([[1, 0, 2]])).nnz
        2
    """
    if isinstance(X, Corpus):
        X = X.counts
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=np.float64)
    else:
        arr = np.asarray(X)
        if arr.dtype == object:
            raise ValueError(f"{name}: expected a document-term count matrix, got an array of objects")
        if arr.ndim != 2:
            raise ValueError(f"{name}: expected a 2-D documents × vocabulary matrix, got shape {arr.shape}")
        X = sp.csr_matrix(arr.astype(np.float64))
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one document and one word, got shape {X.shape}")
    data = X.data
    if not np.isfinite(data).all():
        raise ValueError(f"{name}: counts must be finite (found NaN or inf)")
    if (data < 0).any():
        r = int(np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))[np.argmax(data < 0)])
        raise ValueError(f"{name}: counts must be non-negative; document {r} has a negative count")
    if (data != np.round(data)).any():
        r = int(np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))[np.argmax(data != np.round(data))])
        raise ValueError(
            f"{name}: counts must be integers (word counts); document {r} has a non-integer count "
            "(tf-idf or normalized rows are not counts)"
        )
    X.eliminate_zeros()
    return X


def warn_short_documents(X: sp.csr_matrix, name: str = "X") -> None:
    """Warn about empty documents and documents with fewer than 3 words (skipped by the third moment)."""
    lengths = np.asarray(X.sum(axis=1)).ravel()
    empty = int((lengths == 0).sum())
    short = int(((lengths > 0) & (lengths < 3)).sum())
    if empty or short:
        warnings.warn(
            f"{name}: {empty} empty documents and {short} with fewer than 3 words; the third moment skips them "
            "(spectral LDA needs >= 3 words per document)",
            stacklevel=3,
        )


def iter_batches(X: sp.csr_matrix, batch_size: int) -> Iterator[SparseBatch]:
    """Split a CSR matrix into :class:`~trinity_lightning.topics.moments.SparseBatch` es of ``batch_size`` rows."""
    for start in range(0, X.shape[0], batch_size):
        yield csr_to_batch(X[start : start + batch_size])


def csr_to_batch(X: sp.csr_matrix) -> SparseBatch:
    """One :class:`~trinity_lightning.topics.moments.SparseBatch` from a CSR block (float64 counts)."""
    X = sp.csr_matrix(X, dtype=np.float64)
    X.sort_indices()
    n, V = X.shape
    order = np.argsort(X.indices, kind="stable")  # non-zeros by term, rows ascending within a term
    t_crow = np.zeros(V + 1, dtype=np.int64)
    np.cumsum(np.bincount(X.indices, minlength=V), out=t_crow[1:])
    return SparseBatch(
        crow=torch.from_numpy(X.indptr.astype(np.int64)),
        cols=torch.from_numpy(X.indices.astype(np.int64)),
        vals=torch.from_numpy(X.data.copy()),
        t_crow=torch.from_numpy(t_crow),
        perm=torch.from_numpy(order.astype(np.int64)),
        n_docs=int(n),
        n_features=int(V),
    )
