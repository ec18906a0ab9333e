"""Streaming readers for CSV and JSONL input files, one row at a time with its line number.

Files are never loaded whole: a 1,000,000-row member file or a 10,000,000-event feed is read
row by row. A malformed row (bad JSON, wrong number of CSV cells, bytes that are not UTF-8) is
yielded with an ``error`` so the importer rejects it; only an unreadable file or a missing
required column stops an import.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from engine.errors import InputError

FORMATS = ("csv", "jsonl")
UTF8 = "utf-8"
_BLOCK = 1 << 20
# What the readers cut records on: an encoding must spell these as ASCII does.
_STRUCTURE = '\n\r",{}[]:\\'
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


def resolve_encoding(name: str | None) -> str:
    """The codec name for ``--encoding`` (None: UTF-8); InputError for an unknown codec or
    one that does not write line ends, quotes and commas as ASCII does (e.g. UTF-16), which
    the streaming readers rely on."""
    if name is None:
        return UTF8
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        raise InputError(f"unknown encoding {name!r} (e.g. utf-8, cp1252, latin-1)") from None
    if codec in ("utf-8", "utf-8-sig"):
        return UTF8
    try:
        ascii_compatible = _STRUCTURE.encode(codec) == _STRUCTURE.encode("ascii")
    except (UnicodeError, LookupError):
        ascii_compatible = False
    if not ascii_compatible:
        raise InputError(
            f"encoding {name!r} is not supported: use UTF-8 or a single-byte encoding such "
            "as cp1252 or latin-1"
        )
    return codec


def check_utf8(path: Path) -> None:
    """Refuse, naming the first line at fault, a file that is not UTF-8 (a Windows-1252 or
    Latin-1 export, usually): its rows would otherwise be rejected one by one, or its accents
    mangled. One streaming pass at C speed, before anything is written."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the file ({exc.strerror})") from exc
    with handle:
        lines_before = 0
        tail = b""
        while True:
            block = handle.read(_BLOCK)
            data = tail + block
            try:
                # final=False: a character cut by the end of the block waits for the next.
                _text, consumed = codecs.utf_8_decode(data, "strict", not block)
            except UnicodeDecodeError as exc:
                line = lines_before + count_lines(data[: exc.start]) + 1
                guess = _guess_encoding(data[: exc.end + 64 * 1024])
                raise InputError(
                    f"{path}: line {line} is not UTF-8 (byte 0x{data[exc.start]:02X}); the "
                    f"file looks like {_ENCODING_NAMES[guess]}: re-run with --encoding {guess} "
                    "(or save the file as UTF-8)"
                ) from None
            lines_before += count_lines(data[:consumed])
            tail = data[consumed:]
            if not block:
                return


_ENCODING_NAMES = {"cp1252": "Windows-1252", "latin-1": "Latin-1 (ISO-8859-1)"}


def _guess_encoding(sample: bytes) -> str:
    """Windows-1252 (what spreadsheets on Windows export), unless the bytes use one of the
    five codes it leaves undefined: then Latin-1, which defines every byte."""
    try:
        sample.decode("cp1252")
    except UnicodeDecodeError:
        return "latin-1"
    return "cp1252"


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
        self,
        path: Path,
        fmt: str | None = None,
        *,
        required: tuple[str, ...] = ("external_id",),
        encoding: str = UTF8,
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
        # surrogateescape keeps bytes the encoding does not define: such a row is rejected
        # (and written to the rejects file byte for byte) instead of stopping the import.
        self._text = io.TextIOWrapper(
            io.BufferedReader(self._counter, 1 << 16),
            encoding="utf-8-sig" if encoding == UTF8 else encoding,
            errors="surrogateescape",
            newline="" if self.fmt == "csv" else None,
        )
        self.columns: list[str] = []
        self._csv: Any = None
        self._header_lines = 0
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
        self._header_lines = self._csv.line_num
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
        return csv_records(self._csv, len(self.columns), 0)

    def _jsonl_rows(self) -> Iterator[SourceRow]:
        return jsonl_records(self._text, 1)

    @property
    def header_lines(self) -> int:
        """Physical lines the CSV header took (a quoted name may span lines); 0 for JSONL."""
        return int(self._header_lines)

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


def csv_records(reader: Any, width: int, line_offset: int) -> Iterator[SourceRow]:
    """The records of a ``csv.reader``; a record's line is where it STARTS (a quoted cell may
    span lines), counted from ``line_offset`` + 1 on the reader's first line."""
    previous_end = reader.line_num  # physical lines consumed so far
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # e.g. a NUL byte.
            line = line_offset + previous_end + 1
            previous_end = reader.line_num
            yield SourceRow(line, [], error=f"not readable as CSV ({exc})")
            continue
        line = line_offset + previous_end + 1
        previous_end = reader.line_num
        if not cells:
            continue  # a blank line is not a record
        if len(cells) != width:
            yield SourceRow(line, cells, error=f"has {len(cells)} cells but the header has {width}")
            continue
        yield SourceRow(line, cells)


def jsonl_records(lines: Iterable[str], first_line: int) -> Iterator[SourceRow]:
    """The records of JSONL ``lines``, the first being line ``first_line``."""
    for number, raw_line in enumerate(lines, start=first_line):
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


# --------------------------------------------------------------------------- pieces
#
# A big import parses the file in worker processes: this process only cuts the file into
# pieces of whole records (bytes) and numbers their first line; a worker decodes and parses a
# piece exactly as SourceFile would have read those lines (same decoding, same line endings,
# same csv state at a record boundary), so rows, line numbers and errors are the same.

_LINE_END = re.compile(rb"\r\n|\r|\n")  # what universal newlines split on
_BOM = b"\xef\xbb\xbf"


def count_lines(data: bytes) -> int:
    """Line endings in ``data`` as universal newlines count them (CRLF is one)."""
    return data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")


def parse_piece(
    fmt: str, width: int, data: bytes, first_line: int, encoding: str = UTF8
) -> list[SourceRow]:
    """The records of a piece of the file that starts at a record boundary on ``first_line``."""
    content = data.decode(encoding, errors="surrogateescape")
    if fmt == "csv":
        reader = csv.reader(io.StringIO(content, newline=""))
        return list(csv_records(reader, width, first_line - 1))
    return list(jsonl_records(io.StringIO(content, newline=None), first_line))


class PieceReader:
    """Cuts the body of an input file (after the CSV header) into pieces of about ``records``
    records each, always at a record boundary. Yields (bytes, number of the first line).

    A line ending ends a record unless it is inside a quoted CSV cell; so a stretch without a
    quote character is cut at its line endings, and only a stretch holding quotes is parsed
    here (with the csv module, as the reader would) to find where its records end.
    """

    def __init__(
        self, path: Path, fmt: str, *, skip_lines: int, records: int, block: int = 1 << 20
    ) -> None:
        self.fmt = fmt
        self.records = max(1, records)
        self.block = block
        self.bytes_read = 0
        try:
            self._file = path.open("rb")
        except OSError as exc:
            raise InputError(f"{path}: cannot read the file ({exc.strerror})") from exc
        self._buffer = b""
        self._eof = False
        self._fill()
        if self._buffer.startswith(_BOM):
            self._buffer = self._buffer[len(_BOM) :]
        self.line = 1
        self.first_line = 1 + skip_lines
        for _ in range(skip_lines):
            end = self._line_end(0)
            while end is None and not self._eof:
                self._fill()
                end = self._line_end(0)
            self._buffer = self._buffer[end if end is not None else len(self._buffer) :]
            self.line += 1

    def _fill(self) -> None:
        data = self._file.read(self.block)
        self.bytes_read += len(data)
        if data:
            self._buffer += data
        else:
            self._eof = True

    def _line_end(self, start: int) -> int | None:
        """Index just past the first line ending at or after ``start``; None when there is
        none yet (a CR at the very end may still be the first half of a CRLF)."""
        match = _LINE_END.search(self._buffer, start)
        if match is None:
            return None
        end = match.end()
        if end == len(self._buffer) and match.group() == b"\r" and not self._eof:
            return None
        return end

    def _cut_plain(self) -> int | None:
        """Past the ``records``-th line ending (no quotes up to there), or None."""
        buffer = self._buffer
        if b"\r" not in buffer:  # the usual case: LF only, one fast search per line
            position = -1
            for _ in range(self.records):
                position = buffer.find(b"\n", position + 1)
                if position < 0:
                    return None
            return position + 1
        position = 0
        for _ in range(self.records):
            end = self._line_end(position)
            if end is None:
                return None
            position = end
        return position

    def _cut_quoted(self) -> int | None:
        """Past the last record that certainly ends in the buffer (at most ``records``)."""
        content = self._buffer.decode("utf-8", errors="surrogateescape")
        reader = csv.reader(io.StringIO(content, newline=""))
        ends: list[int] = []  # physical lines consumed after each record
        while len(ends) <= self.records:
            try:
                next(reader)
            except StopIteration:
                break
            except csv.Error:
                pass
            ends.append(reader.line_num)
        if len(ends) > self.records:
            lines = ends[self.records - 1]
        elif self._eof:
            return len(self._buffer)  # everything left is whole records
        elif len(ends) >= 2:
            # The last record read may be cut short by the end of the buffer: keep it for later.
            lines = ends[-2]
        else:
            return None
        position = 0
        for _ in range(lines):
            end = self._line_end(position)
            if end is None:  # cannot happen: those lines were read from this buffer
                return None
            position = end
        return position

    def _cut(self) -> int | None:
        if self.fmt == "csv":
            plain = self._cut_plain()
            if plain is not None and self._buffer.find(b'"', 0, plain) < 0:
                return plain
            if plain is None and b'"' not in self._buffer:
                return len(self._buffer) if self._eof else None
            return self._cut_quoted()
        plain = self._cut_plain()
        if plain is None and self._eof:
            return len(self._buffer)
        return plain

    def __iter__(self) -> Iterator[tuple[bytes, int]]:
        while True:
            cut = self._cut() if self._buffer else None
            if cut is None or cut == 0:
                if self._eof:
                    if self._buffer:
                        piece, self._buffer = self._buffer, b""
                        yield piece, self.line
                    return
                self._fill()
                continue
            piece, self._buffer = self._buffer[:cut], self._buffer[cut:]
            yield piece, self.line
            self.line += count_lines(piece)

    def close(self) -> None:
        self._file.close()


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
    """SHA-256 of the row content as read; raises UnicodeEncodeError on bytes the file's
    encoding does not define."""
    hasher = prefix.copy()
    content = row.original if isinstance(row.original, str) else "\x1f".join(row.original)
    hasher.update(content.encode())
    return str(hasher.hexdigest())


def original_text(row: SourceRow) -> list[str]:
    """The row's cells for the rejects file."""
    return [row.original] if isinstance(row.original, str) else list(row.original)
