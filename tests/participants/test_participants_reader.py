"""The streaming reader: line numbers, malformed rows, unreadable files."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import InputError
from engine.participants.reader import SourceFile, digest_prefix, row_digest


def _rows(path: Path) -> list[tuple[int, object, str | None]]:
    with SourceFile(path) as source:
        return [(r.line, source.mapping(r) if r.error is None else None, r.error) for r in source]


def test_csv_line_numbers_count_physical_lines_of_quoted_cells(tmp_path: Path) -> None:
    path = tmp_path / "members.csv"
    path.write_bytes(
        b"\xef\xbb\xbfExternal_ID,note\r\n"  # BOM, CRLF, header case
        b'A,"first\nsecond\nthird"\r\n'
        b"\r\n"  # blank line: not a record
        b"B,plain\n"
        b'C,"with ""quotes"", and comma"\n'
        b"D\n"
    )
    rows = _rows(path)
    assert [(line, error is None) for line, _, error in rows] == [
        (2, True),
        (6, True),
        (7, True),
        (8, False),
    ]
    assert rows[0][1] == {"external_id": "A", "note": "first\nsecond\nthird"}
    assert rows[2][1] == {"external_id": "C", "note": 'with "quotes", and comma'}
    assert rows[3][2] == "has 1 cells but the header has 2"


def test_jsonl_line_numbers_and_malformed_lines(tmp_path: Path) -> None:
    path = tmp_path / "members.jsonl"
    path.write_text(
        '{"external_id": "A"}\n\n{"external_id": \n[1, 2]\n{"External_Id": "B", "x": 1}\n',
        encoding="utf-8",
    )
    rows = _rows(path)
    assert [line for line, _, _ in rows] == [1, 3, 4, 5]
    assert rows[0][1] == {"external_id": "A"}
    assert rows[1][2] is not None and rows[1][2].startswith("not valid JSON")
    assert rows[2][2] == "not a JSON object"
    assert rows[3][1] == {"external_id": "B", "x": 1}


def test_bytes_that_are_not_utf8_make_the_digest_fail_not_the_reader(tmp_path: Path) -> None:
    path = tmp_path / "members.csv"
    path.write_bytes(b"external_id,name\nA,caf\xe9\nB,ok\n")
    with SourceFile(path) as source:
        rows = list(source)
        prefix = digest_prefix("test", source.columns)
    assert len(rows) == 2
    with pytest.raises(UnicodeEncodeError):
        row_digest(prefix, rows[0])
    assert len(row_digest(prefix, rows[1])) == 64


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name,email\nA,a@example.com\n", "required column external_id is missing"),
        ("", "the file is empty"),
        ("external_id,a,a\n", "column 'a' appears twice"),
    ],
)
def test_unusable_files_are_input_errors_naming_the_file(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message) as raised:
        SourceFile(path)
    assert str(path) in str(raised.value)


def test_missing_file_and_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read the file"):
        SourceFile(tmp_path / "absent.csv")
    odd = tmp_path / "members.xlsx"
    odd.write_text("x", encoding="utf-8")
    with pytest.raises(InputError, match="--format"):
        SourceFile(odd)
    with SourceFile(odd, "csv", required=()) as source:
        assert source.fmt == "csv"
