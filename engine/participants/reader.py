"""Streaming readers for CSV and JSONL input files, one row at a time with its line number.

Files are never loaded whole: a 1,000,000-row member file or a 10,000,000-event feed is read
row by row. A malformed row (bad JSON, wrong number of CSV cells, bytes that are not UTF-8) is
yielded with an ``error`` so the importer rejects it; only an unreadable file or a missing
required column stops an import.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from engine.errors import InputError

FORMATS = ("csv", "jsonl")
# Cells can be long (free-text attributes); the csv module's default limit is 128 KiB.
csv.field_size_limit(16 * 1024 * 1024)


@dataclass(slots=True)
class SourceRow:
    """One record of the input file.

    ``original`` is what the file holds (CSV cells, or the JSONL line) and goes to the rejects
    file as is; ``values`` is the parsed JSONL object (None for CSV, whose cells are mapped to
    the header lazily); ``error`` says why the row cannot even be read.
    """

    line: int
    original: list[str] | str
    values: dict[str, Any] | None = None
    error: str | None = None


def detect_format(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        fmt = fmt.lower()
        if fmt not in FORMATS:
            raise InputError(f"{path}: unknown format {fmt!r}; use csv or jsonl")
        return fmt
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson"):
        return "jsonl"
    if suffix in ("csv", "txt"):
        return "csv"
    raise InputError(f"{path}: cannot tell the format from the extension; pass --format csv|jsonl")


class _CountingReader(io.RawIOBase):
    """Counts the bytes read from the file, for a progress bar on a file read as text."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        self.consumed += len(data)
        return len(data)

    def close(self) -> None:
        self._raw.close()
        super().close()


class SourceFile:
    """An open input file. Iterate for rows; ``columns`` is the CSV header (lower-cased);
    ``bytes_read`` / ``size`` drive a progress bar."""

    def __init__(
        self, path: Path, fmt: str | None = None, *, required: tuple[str, ...] = ("external_id",)
    ) -> None:
        self.path = path
        self.fmt = detect_format(path, fmt)
        self.required = required
        try:
            raw = path.open("rb")
            self.size = path.stat().st_size
        except OSError as exc:
            raise InputError(f"{path}: cannot read the file ({exc.strerror})") from exc
        self._counter = _CountingReader(raw)
        # surrogateescape keeps bytes that are not UTF-8: such a row is rejected (and written to
        # the rejects file byte for byte) instead of stopping the whole import.
        self._text = io.TextIOWrapper(
            io.BufferedReader(self._counter, 1 << 16),
            encoding="utf-8-sig",
            errors="surrogateescape",
            newline="" if self.fmt == "csv" else None,
        )
        self.columns: list[str] = []
        self._csv: Any = None
        if self.fmt == "csv":
            self._open_csv()

    @property
    def bytes_read(self) -> int:
        return self._counter.consumed

    def _open_csv(self) -> None:
        self._csv = csv.reader(self._text)
        try:
            header = next(self._csv, None)
        except (csv.Error, UnicodeError) as exc:
            self.close()
            raise InputError(f"{self.path}: line 1: cannot read the header ({exc})") from exc
        if header is None:
            self.close()
            raise InputError(f"{self.path}: the file is empty (a header line is required)")
        self.columns = [name.strip().lower() for name in header]
        seen: set[str] = set()
        for name in self.columns:
            if name in seen:
                self.close()
                raise InputError(f"{self.path}: line 1: column {name!r} appears twice")
            seen.add(name)
        missing = [name for name in self.required if name not in seen]
        if missing:
            self.close()
            raise InputError(
                f"{self.path}: line 1: required column {', '.join(missing)} is missing "
                f"(columns found: {', '.join(self.columns) or 'none'})"
            )

    def __iter__(self) -> Iterator[SourceRow]:
        return self._csv_rows() if self.fmt == "csv" else self._jsonl_rows()

    def _csv_rows(self) -> Iterator[SourceRow]:
        reader = self._csv
        width = len(self.columns)
        previous_end = reader.line_num  # physical lines consumed so far (the header)
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                # e.g. a NUL byte or a quote left open to the end of the file.
                line = previous_end + 1
                previous_end = reader.line_num
                yield SourceRow(line, [], error=f"not readable as CSV ({exc})")
                continue
            line = previous_end + 1  # a quoted cell may span lines: the record STARTS here
            previous_end = reader.line_num
            if not cells:
                continue  # a blank line is not a record
            if len(cells) != width:
                yield SourceRow(
                    line, cells, error=f"has {len(cells)} cells but the header has {width}"
                )
                continue
            yield SourceRow(line, cells)

    def _jsonl_rows(self) -> Iterator[SourceRow]:
        for number, raw_line in enumerate(self._text, start=1):
            stripped = raw_line.strip()
            if not stripped:
                continue
            try:
                value = json.loads(stripped)
            except ValueError as exc:
                yield SourceRow(number, stripped, error=f"not valid JSON ({exc})")
                continue
            if not isinstance(value, dict):
                yield SourceRow(number, stripped, error="not a JSON object")
                continue
            yield SourceRow(number, stripped, {str(k).lower(): v for k, v in value.items()})

    def mapping(self, row: SourceRow) -> dict[str, Any]:
        """The row as {column: value}."""
        if row.values is not None:
            return row.values
        return dict(zip(self.columns, row.original, strict=True))

    def close(self) -> None:
        self._text.close()

    def __enter__(self) -> SourceFile:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def digest_prefix(context: str, columns: list[str]) -> Any:
    """A hasher primed with what the meaning of a row depends on besides its own content (the
    header, the program's zone and region, the validation rules' version)."""
    hasher = hashlib.sha256()
    hasher.update(context.encode())
    hasher.update(b"\x1e")
    hasher.update("\x1f".join(columns).encode())
    hasher.update(b"\x1e")
    return hasher


def row_digest(prefix: Any, row: SourceRow) -> str:
    """SHA-256 of the raw row content; raises UnicodeEncodeError on bytes that are not UTF-8."""
    hasher = prefix.copy()
    content = row.original if isinstance(row.original, str) else "\x1f".join(row.original)
    hasher.update(content.encode())
    return str(hasher.hexdigest())


def original_text(row: SourceRow) -> list[str]:
    """The row's cells for the rejects file."""
    return [row.original] if isinstance(row.original, str) else list(row.original)
