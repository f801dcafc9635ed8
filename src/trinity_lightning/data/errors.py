"""Errors raised by the data readers: each names the file, the line (or row) and the field."""

from __future__ import annotations

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
