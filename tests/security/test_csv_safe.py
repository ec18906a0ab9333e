"""The engine's one CSV writer makes formula-like cells inert and leaves numbers alone."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from engine.csv_safe import SafeWriter, safe_cell
from engine.reports.common import Table
from engine.reports.render import to_csv

DANGEROUS = ("=", "+", "-", "@", "\t", "\r")


def test_formula_starts_are_quoted() -> None:
    assert safe_cell("=1+1") == "'=1+1"
    assert safe_cell("+cmd|' /C calc'!A0") == "'+cmd|' /C calc'!A0"
    assert safe_cell("-2+3") == "'-2+3"
    assert safe_cell("@SUM(A1)") == "'@SUM(A1)"
    assert safe_cell("\t=1") == "'\t=1"
    assert safe_cell("\r=1") == "'\r=1"


def test_numbers_and_plain_text_are_unchanged() -> None:
    for value in ("-250", "+12025550123", "-1.5", "3e5", "Rosa", "", "a=b"):
        assert safe_cell(value) == value
    assert safe_cell(-250) == -250
    assert safe_cell(None) is None


@given(st.text())
def test_no_written_cell_can_start_a_formula(text: str) -> None:
    out = io.StringIO()
    SafeWriter(out).writerow([text])
    [[cell]] = list(csv.reader(io.StringIO(out.getvalue())))
    assert not cell.startswith(DANGEROUS) or safe_cell(text) == text  # only numbers pass as-is
    if cell.startswith(DANGEROUS):
        float(cell)  # what passed unquoted is a number


def test_report_csv_is_written_through_it() -> None:
    table = Table(title="Complaints", columns=("summary", "points"), rows=[("=cmd()", -250)])
    rows = list(csv.reader(io.StringIO(to_csv([table]))))
    assert rows[2] == ["'=cmd()", "-250"]


def test_an_import_rejects_file_makes_formula_cells_inert(tmp_path: Path) -> None:
    from engine.participants.results import RejectsWriter

    path = tmp_path / "members.rejects.csv"
    writer = RejectsWriter(path, ["external_id", "first_name", "phone", "points_balance"])
    writer.write(
        2, ["email: not an address"], ["M1", '=HYPERLINK("http://x","y")', "+12025550123", "-5"]
    )
    writer.close()
    rows = list(csv.reader(io.StringIO(path.read_text())))
    assert rows[1] == [
        "2",
        "email: not an address",
        "M1",
        '\'=HYPERLINK("http://x","y")',
        "+12025550123",
        "-5",
    ]
