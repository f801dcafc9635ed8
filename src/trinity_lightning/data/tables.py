"""Tables: CSV/TSV, JSONL, Parquet, ``.npz``, Hugging Face datasets and pandas frames.

:func:`read_table` gives a :class:`pandas.DataFrame` (rows read from text files remember their line
numbers, for error messages) and :func:`load_tensors` a validated :class:`ArrayDataset`. Every
validation error is a :class:`~trinity_lightning.data.errors.DataFormatError` naming the file, the
line (or row) and the field.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from trinity_lightning.data.errors import DataFormatError, text_lines

TABLE_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".npz": "npz",
}

# The first data row of each format sits on this 1-based line of the file (CSV/TSV have a header).
_FIRST_LINE = {"csv": 2, "tsv": 2, "jsonl": 1}


def _describe(source: Any) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    return f"<{type(source).__module__.split('.')[0]}.{type(source).__name__}>"


def _location(frame: pd.DataFrame, row: int) -> dict[str, Any]:
    """Line (files) or row (in-memory) of a data row, for error messages."""
    lines = frame.attrs.get("lines")
    if lines is not None:
        return {"line": int(lines[row])}
    return {"row": int(row)}


def _read_jsonl(path: Path) -> pd.DataFrame:
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    for number, text in text_lines(path):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataFormatError(f"not valid JSON ({err.msg})", source=path, line=number) from None
        if not isinstance(record, dict):
            raise DataFormatError("each line must be a JSON object", source=path, line=number)
        records.append(record)
        lines.append(number)
    frame = pd.DataFrame.from_records(records)
    frame.attrs["lines"] = lines
    return frame


def _first_ragged_line(path: Path, sep: str) -> tuple[int, int, int] | None:
    """``(line, expected, got)`` of the first record whose field count differs from the header's."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter=sep)
        expected: int | None = None
        start = 1
        for record in reader:
            if record:
                if expected is None:
                    expected = len(record)
                elif len(record) != expected:
                    return start, expected, len(record)
            start = reader.line_num + 1
    return None


def _read_delimited(path: Path, sep: str, text_columns: Sequence[str] = ()) -> pd.DataFrame:
    try:
        with warnings.catch_warnings():
            # index_col=False: a row with one field too many must not turn the first column into an index
            # (every later value would shift one column and be blamed on the wrong field and line)
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(
                path,
                sep=sep,
                skip_blank_lines=False,
                index_col=False,
                dtype={c: str for c in text_columns} or None,
            )
    except (pd.errors.ParserError, pd.errors.ParserWarning) as err:
        ragged = _first_ragged_line(path, sep)
        if ragged is not None:
            line, expected, got = ragged
            raise DataFormatError(
                f"expected {expected} fields (as many as the header), got {got}",
                source=path,
                line=line,
                field="columns",
            ) from None
        raise DataFormatError(f"malformed row ({err})", source=path, field="columns") from None
    except pd.errors.EmptyDataError:
        raise DataFormatError("the file is empty (a header line is required)", source=path) from None
    except UnicodeDecodeError:
        for _ in text_lines(path, sep=sep, header=True):  # raises, naming the line and the field
            pass
        raise  # pragma: no cover - pandas and Python disagree on what UTF-8 is
    blank = frame.isna().all(axis=1).to_numpy()
    lines = np.arange(len(frame)) + _FIRST_LINE["csv"]
    frame = frame.loc[~blank].reset_index(drop=True)
    frame.attrs["lines"] = lines[~blank].tolist()
    return frame


def _read_npz(path: Path) -> pd.DataFrame:
    try:
        arrays = dict(np.load(path, allow_pickle=False))
    except (OSError, ValueError) as err:
        raise DataFormatError(f"not a readable .npz archive ({err})", source=path) from None
    return _frame_from_arrays(arrays, path)


def _frame_from_arrays(arrays: Mapping[str, Any], source: Any) -> pd.DataFrame:
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise DataFormatError(
            f"arrays have different lengths {lengths}",
            source=_describe(source),
            field=min(lengths, key=lambda k: lengths[k]),
        )
    columns: dict[str, Any] = {}
    for key, value in arrays.items():
        array = np.asarray(value)
        columns[key] = list(array) if array.ndim > 1 else array
    return pd.DataFrame(columns)


def as_text(value: Any) -> str:
    """The text form of a value read as an id: ``"7"`` for ``7``, ``7.0`` or ``np.int64(7)``, ``"a"`` for ``"a"``.

    Example:
        >>> as_text(7), as_text(7.0), as_text(7.5), as_text("007")
        ('7', '7', '7.5', '007')
    """
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _text_columns(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``columns`` as strings (missing values stay missing), as a copy that keeps ``attrs``."""
    wanted = [c for c in columns if c in frame.columns and not _all_text(frame[c])]
    if not wanted:
        return frame
    frame = frame.copy()
    for column in wanted:
        values = frame[column]
        frame[column] = values.map(lambda v: v if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    return frame


def _all_text(values: pd.Series) -> bool:
    return pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty")


def read_table(source: Any, *, split: str | None = None, text_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Read a table from a file, a Hugging Face dataset, a pandas frame or a mapping of arrays.

    Args:
        source: a path (``.csv``, ``.tsv``, ``.jsonl``/``.json`` lines, ``.parquet``, ``.npz``), a
            ``datasets.Dataset`` / ``DatasetDict``, a :class:`pandas.DataFrame`, or a ``dict`` of arrays.
        split: the split to take from a ``DatasetDict`` (required when it has more than one).
        text_columns: columns read as strings from files and HF datasets, exactly as written (ids:
            ``"007"`` stays ``"007"``, ``"1.0"`` stays ``"1.0"``; a JSON number ``1`` becomes ``"1"``).
            Frames and dicts given in memory keep their types.

    Returns:
        A data frame; rows read from text files remember their line numbers for error messages.

    Raises:
        DataFormatError: a row with more or fewer fields than the header, invalid UTF-8, invalid JSON,
            naming the file, the line and the field.

    Example:
        >>> frame = read_table({"x": [1.0, 2.0], "label": [0, 1]})
        >>> list(frame.columns)
        ['x', 'label']
    """
    if isinstance(source, pd.DataFrame):
        return source
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
        kind = TABLE_SUFFIXES.get(path.suffix.lower())
        if kind is None:
            raise DataFormatError(
                f"unknown file type {path.suffix!r}; expected one of {sorted(TABLE_SUFFIXES)}", source=path
            )
        if kind in ("csv", "tsv"):
            return _read_delimited(path, "," if kind == "csv" else "\t", text_columns)
        if kind == "jsonl":
            return _text_columns(_read_jsonl(path), text_columns)
        if kind == "parquet":
            return _text_columns(pd.read_parquet(path), text_columns)
        return _text_columns(_read_npz(path), text_columns)
    try:  # Hugging Face datasets (imported lazily: it is slow to import)
        import datasets as hf
    except ImportError:  # pragma: no cover - datasets is a dependency
        hf = None
    if hf is not None and isinstance(source, hf.DatasetDict):
        if split is None:
            if len(source) != 1:
                raise ValueError(f"split: the DatasetDict has splits {sorted(source)}; pass split=...")
            split = next(iter(source))
        if split not in source:
            raise ValueError(f"split: {split!r} is not one of {sorted(source)}")
        return read_table(source[split], text_columns=text_columns)
    if hf is not None and isinstance(source, hf.Dataset):
        return _text_columns(source.to_pandas(), text_columns)  # type: ignore[arg-type]
    if isinstance(source, Mapping):
        return _frame_from_arrays(source, source)
    raise TypeError(
        f"source: cannot read a table from {type(source).__name__}; pass a path, a "
        "datasets.Dataset/DatasetDict, a pandas.DataFrame or a dict of arrays"
    )


def _stack_column(frame: pd.DataFrame, column: str, source: str) -> np.ndarray:
    values = frame[column].tolist()
    if values and isinstance(values[0], (list, tuple, np.ndarray)):
        shape = np.shape(values[0])
        for row, value in enumerate(values):
            if np.shape(value) != shape:
                raise DataFormatError(
                    f"ragged sequence: expected shape {shape}, got {np.shape(value)}",
                    source=source,
                    field=column,
                    **_location(frame, row),
                )
        try:
            return np.stack([np.asarray(v, dtype=np.float64) for v in values]).reshape(len(values), -1)
        except (TypeError, ValueError):
            raise DataFormatError("sequence holds non-numeric values", source=source, field=column) from None
    try:
        return np.asarray(pd.to_numeric(frame[column]), dtype=np.float64).reshape(len(values), 1)
    except (TypeError, ValueError):
        for row, value in enumerate(values):
            try:
                float(value)
            except (TypeError, ValueError):
                raise DataFormatError(
                    f"not a number: {value!r}", source=source, field=column, **_location(frame, row)
                ) from None
        raise


@dataclass
class ArrayDataset(Dataset):
    """A map-style dataset of feature tensors and (optional) integer labels.

    Attributes:
        features: float tensor ``(N, ...)``.
        labels: ``int64`` tensor ``(N,)`` or ``None`` for an unlabelled set.
        classes: class names, index = label id (``None`` when labels were given as ids).

    Example:
        >>> ds = ArrayDataset(torch.zeros(3, 2), torch.tensor([0, 1, 0]))
        >>> len(ds), ds[1][1].item()
        (3, 1)
    """

    features: torch.Tensor
    labels: torch.Tensor | None = None
    classes: list[str] | None = None

    def __post_init__(self) -> None:
        if self.labels is not None and len(self.labels) != len(self.features):
            raise ValueError(f"labels: {len(self.labels)} labels for {len(self.features)} feature rows")

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | torch.Tensor:
        if self.labels is None:
            return self.features[index]
        return self.features[index], self.labels[index]


def load_tensors(
    source: Any,
    *,
    label: str | None = "label",
    features: Sequence[str] | None = None,
    num_classes: int | None = None,
    classes: Sequence[str] | None = None,
    shape: Sequence[int] | None = None,
    split: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> ArrayDataset:
    """Read a labelled table into tensors, validating every row.

    Args:
        source: anything :func:`read_table` reads.
        label: the label column (``None`` for an unlabelled set). Integer ids, or names when
            ``classes`` is given.
        features: feature columns; default every column but the label. A column may hold lists
            (JSONL, HF ``Sequence``) that are flattened and concatenated.
        num_classes: check that integer labels lie in ``[0, num_classes)``.
        classes: class names; labels given as names are mapped to their index.
        shape: reshape each example's features (e.g. ``(1, 8, 8)`` for images).
        split: the split of a ``DatasetDict``.
        dtype: feature dtype.

    Raises:
        DataFormatError: missing column, non-numeric or NaN feature, ragged sequence, label out of
            range or unknown, naming the file, line/row and field.

    Example:
        >>> ds = load_tensors({"a": [0.5, 1.0], "b": [[1, 2], [3, 4]], "label": [1, 0]}, num_classes=2)
        >>> ds.features.shape, ds.labels.tolist()
        (torch.Size([2, 3]), [1, 0])
    """
    frame = read_table(source, split=split)
    where = _describe(source)
    if label is not None and label not in frame.columns:
        raise DataFormatError(f"missing label column; columns are {list(frame.columns)}", source=where, field=label)
    feature_columns = list(features) if features is not None else [c for c in frame.columns if c != label]
    for column in feature_columns:
        if column not in frame.columns:
            raise DataFormatError(
                f"missing feature column; columns are {list(frame.columns)}", source=where, field=column
            )
    if not feature_columns:
        raise DataFormatError("no feature columns", source=where, field="features")
    blocks = [_stack_column(frame, column, where) for column in feature_columns]
    widths = [b.shape[1] for b in blocks]
    matrix = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(frame), 0))
    bad = ~np.isfinite(matrix)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        column = feature_columns[int(np.searchsorted(np.cumsum(widths), col, side="right"))]
        raise DataFormatError(
            f"feature is {matrix[row, col]} (NaN/inf not allowed)",
            source=where,
            field=column,
            **_location(frame, int(row)),
        )
    tensor = torch.as_tensor(matrix, dtype=dtype)
    if shape is not None:
        tensor = tensor.reshape(len(frame), *shape)
    labels = None
    if label is not None:
        labels = _label_ids(frame, label, where, num_classes, classes)
    return ArrayDataset(tensor, labels, list(classes) if classes is not None else None)


def _label_ids(
    frame: pd.DataFrame, label: str, where: str, num_classes: int | None, classes: Sequence[str] | None
) -> torch.Tensor:
    values = frame[label].tolist()
    index = {name: i for i, name in enumerate(classes)} if classes is not None else None
    limit = len(classes) if classes is not None else num_classes
    ids = np.empty(len(values), dtype=np.int64)
    for row, value in enumerate(values):
        if index is not None and isinstance(value, str):
            if value not in index:
                raise DataFormatError(
                    f"unknown label {value!r}; known: {list(index)}", source=where, field=label, **_location(frame, row)
                )
            ids[row] = index[value]
            continue
        if value is None or (isinstance(value, float) and math.isnan(value)):
            raise DataFormatError("label is missing", source=where, field=label, **_location(frame, row))
        try:
            as_float = float(value)
        except (TypeError, ValueError):
            raise DataFormatError(
                f"label {value!r} is not an integer id (pass classes=[...] to map names)",
                source=where,
                field=label,
                **_location(frame, row),
            ) from None
        if as_float != int(as_float):
            raise DataFormatError(
                f"label {value!r} is not an integer id", source=where, field=label, **_location(frame, row)
            )
        ids[row] = int(as_float)
        if ids[row] < 0 or (limit is not None and ids[row] >= limit):
            raise DataFormatError(
                f"label id {ids[row]} is out of range [0, {limit})", source=where, field=label, **_location(frame, row)
            )
    return torch.from_numpy(ids)
