"""Errors raised by the data readers: each names the file, the line (or row) and the field."""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path


class DataFormatError(ValueError):
    """Bad input data: the message names the source, the line/row and the field.

    Args:
        message: what is wrong and how to fix it.
        source: file path (or a short description such as ``"<datasets.Dataset>"``).
        line: 1-based line number in a text file, or the 0-based row of an in-memory table.
        field: the column / field / argument that is wrong.

    Example:
        >>> err = DataFormatError("label 12 is out of range [0, 10)", source="a.csv", line=3, field="label")
        >>> str(err)
        "a.csv, line 3, field 'label': label 12 is out of range [0, 10)"
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
        row: int | None = None,
    ) -> None:
        self.source = str(source) if source is not None else None
        self.line = line
        self.row = row
        self.field = field
        self.reason = message
        where = []
        if self.source is not None:
            where.append(self.source)
        if line is not None:
            where.append(f"line {line}")
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field {field!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


def _field_at(raw: bytes, position: int, sep: bytes | None) -> int:
    """0-based index of the field that byte ``position`` of a line belongs to."""
    before = raw[:position]
    if sep is not None:
        return before.count(sep)
    return len(before.split()) - (0 if before[-1:].isspace() or not before else 1)


def text_lines(
    path: str | Path,
    *,
    sep: str | None = None,
    field_names: Sequence[str] | Callable[[int, int], str] | None = None,
    header: bool = False,
) -> Iterator[tuple[int, str]]:
    """The lines of a UTF-8 text file with their 1-based numbers; a leading byte-order mark is dropped.

    Invalid UTF-8 raises :class:`DataFormatError` naming the file, the line and the field that holds the bad
    byte (fields split on ``sep``, or on whitespace when ``sep`` is ``None``).

    Args:
        path: the file.
        sep: the field separator (``None``: runs of whitespace, as in CoNLL files).
        field_names: names of the fields, in order, or a function of the 0-based field index and the
            number of fields on the line (default ``"column <k>"``, 1-based).
        header: the first line names the fields (CSV/TSV).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> _ = p.write_bytes(b"\\xef\\xbb\\xbfEU B-ORG\\nbad \\xff\\n")
        >>> try:
        ...     [line for line in text_lines(p, field_names=["token", "tag"])]
        ... except DataFormatError as err:
        ...     print(err.line, err.field)
        2 tag
    """
    names = list(field_names) if field_names is not None and not callable(field_names) else None
    separator = sep.encode() if sep is not None else None
    with Path(path).open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                index = _field_at(raw, err.start, separator)
                if callable(field_names):
                    count = len(raw.split(separator)) if separator is not None else len(raw.split())
                    field = field_names(index, count)
                elif names is not None and index < len(names):
                    field = names[index]
                else:
                    field = f"column {index + 1}"
                raise DataFormatError(
                    f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at character {err.start + 1}); "
                    "save the file as UTF-8",
                    source=path,
                    line=number,
                    field=field,
                ) from None
            if header and number == 1 and names is None:
                names = [n.strip() for n in (text.split(sep) if sep is not None else text.split())]
            yield number, text
