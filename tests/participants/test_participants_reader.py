"""The streaming reader: line numbers, malformed rows, unreadable files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InputError
from engine.participants.reader import (
    PieceReader,
    SourceFile,
    SourceRow,
    digest_prefix,
    parse_piece,
    row_digest,
)


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


# --------------------------------------------------------------------------- pieces

_cell = st.one_of(
    st.sampled_from(["", "a", "b c", '"', '""', 'x"y', ",", "\n", "\r", "\r\n", "é", "\x00"]),
    st.text(alphabet='ab,"\r\n ', max_size=6),
)
_record = st.lists(_cell, min_size=1, max_size=4)


def _encode_csv(records: list[list[str]], quote_all: bool, ending: str) -> str:
    lines = []
    for cells in records:
        if quote_all:
            lines.append(",".join('"' + c.replace('"', '""') + '"' for c in cells))
        else:
            lines.append(",".join(cells))  # raw: may be malformed on purpose
    return ending.join(lines)


def _as_tuples(rows: list[SourceRow]) -> list[tuple[object, ...]]:
    return [(r.line, r.original, r.values, r.error) for r in rows]


def _pieces(path: Path, fmt: str, records: int, block: int) -> list[SourceRow]:
    with SourceFile(path, fmt) as source:
        skip, width = source.header_lines, len(source.columns)
    reader = PieceReader(path, fmt, skip_lines=skip, records=records, block=block)
    rows: list[SourceRow] = []
    line = None
    for data, first_line in reader:
        assert line is None or first_line >= line
        rows.extend(parse_piece(fmt, width, data, first_line))
        line = first_line
    reader.close()
    assert reader.bytes_read == path.stat().st_size
    return rows


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_record, max_size=12),
    st.booleans(),
    st.sampled_from(["\n", "\r\n", "\r"]),
    st.booleans(),
    st.booleans(),
    st.integers(1, 4),
    st.integers(1, 40),
)
def test_pieces_read_exactly_what_the_reader_reads(
    tmp_path_factory: pytest.TempPathFactory,
    records: list[list[str]],
    quote_all: bool,
    ending: str,
    bom: bool,
    final_newline: bool,
    per_piece: int,
    block: int,
) -> None:
    """Cutting the file into pieces (as the importer's workers read it) changes nothing: the
    same rows, line numbers and errors as one SourceFile, whatever the quoting and endings."""
    body = _encode_csv([["external_id", "b"], *records], quote_all, ending)
    if final_newline:
        body += ending
    data = (b"\xef\xbb\xbf" if bom else b"") + body.encode("utf-8")
    path = tmp_path_factory.mktemp("pieces") / "members.csv"
    path.write_bytes(data.replace("é".encode(), b"\xe9") if not quote_all else data)
    with SourceFile(path) as source:
        expected = _as_tuples(list(source))
    assert _as_tuples(_pieces(path, "csv", per_piece, block)) == expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.just(""),
            st.just("{broken"),
            st.just("[1]"),
            st.builds(lambda v: json.dumps({"external_id": v}), st.text(max_size=5)),
        ),
        max_size=12,
    ),
    st.sampled_from(["\n", "\r\n", "\r"]),
    st.integers(1, 4),
    st.integers(1, 40),
)
def test_jsonl_pieces_read_exactly_what_the_reader_reads(
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[str],
    ending: str,
    per_piece: int,
    block: int,
) -> None:
    path = tmp_path_factory.mktemp("pieces") / "members.jsonl"
    path.write_bytes(ending.join(lines).encode("utf-8", errors="surrogatepass"))
    with SourceFile(path) as source:
        expected = _as_tuples(list(source))
    assert _as_tuples(_pieces(path, "jsonl", per_piece, block)) == expected
