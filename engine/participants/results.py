"""What an import reports: the summary, and the rejects file beside the input."""

from __future__ import annotations

import codecs
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.csv_safe import SafeWriter

Progress = Callable[[int, int], None]  # (bytes read so far, file size)


def _original_bytes(exc: UnicodeError) -> tuple[str | bytes, int]:
    """Encoding error handler of the rejects file: a byte the reader kept as a surrogate
    (surrogateescape) goes back as that byte; a character the file's encoding cannot write
    (only ever in a reason, never in the original cells) becomes '?'."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    out = bytearray()
    for char in exc.object[exc.start : exc.end]:
        code = ord(char)
        out += bytes([code - 0xDC00]) if 0xDC80 <= code <= 0xDCFF else b"?"
    return bytes(out), exc.end


codecs.register_error("campaign-original-bytes", _original_bytes)


@dataclass(frozen=True)
class ImportSummary:
    read: int
    inserted: int
    updated: int
    unchanged: int
    rejected: int
    rejects_path: Path | None
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0


class RejectsWriter:
    """The rejects CSV: ``line``, ``reasons`` ("; "-joined), then the original columns (JSONL:
    the original line in ``raw``), in the input's encoding, formula-like cells made inert.
    Opened on the first reject only."""

    def __init__(self, path: Path, columns: Sequence[str], encoding: str = "utf-8") -> None:
        self.path = path
        # The input's encoding: with surrogateescape, a rejected row is written back as the
        # very bytes it was read from.
        self.encoding = encoding
        self.header = ["line", "reasons", *columns]
        self.count = 0
        self._file: Any = None
        self._writer: Any = None

    def write(self, line: int, reasons: Sequence[str], original: Sequence[str]) -> None:
        if self._writer is None:
            self._file = self.path.open(
                "w", encoding=self.encoding, errors="campaign-original-bytes", newline=""
            )
            # Cells a spreadsheet would run as a formula get a leading ' (engine/csv_safe.py);
            # every other cell is written back as it was read.
            self._writer = SafeWriter(self._file)
            self._writer.writerow(self.header)
        self._writer.writerow([line, "; ".join(reasons), *original])
        self.count += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        elif self.path.exists() and _is_rejects_file(self.path):
            # Yesterday's rejects file beside today's clean import would be misleading.
            self.path.unlink()


def _is_rejects_file(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            return handle.readline().startswith("line,reasons")
    except OSError:
        return False


def default_rejects_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.rejects.csv")
