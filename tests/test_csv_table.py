"""The one reader of CSV files that must have certain columns (moths_framework.csv_table):
the file's problems, each a one-line error of the caller's class naming the file and what
it should be; rows and records as the csv module gives them."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from moths_framework.cli.dwc import main as dwc
from moths_framework.csv_table import csv_table
from moths_framework.occurrences.counts import OCCURRENCE_COLUMNS

WHAT = "a tally.csv from moths-tally"


class TallyError(ValueError):
    """The caller's own error class."""


def read(path: Path, columns=("site", "night", "count")) -> list[dict]:
    with csv_table(path, columns, WHAT, TallyError) as table:
        return list(table.records())


def error_of(path: Path, columns=("site", "night", "count")) -> str:
    with pytest.raises(TallyError) as error:
        read(path, columns)
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    return message


def test_missing_columns_are_named_in_the_order_asked(tmp_path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("count,species,width\n3,x,1\n", encoding="utf-8")
    message = error_of(path, ("site", "count", "night", "species", "date"))
    assert f"{path} lacks column(s) site, night, date (expected {WHAT})" in message
    assert message.endswith("its columns: count, species, width")


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "is empty"),
        (b"\n", "has no header row"),
        (b",,\nx,y,z\n", "has no header row"),
        (b"\r\nsite,night,count\n", "has no header row"),
    ],
)
def test_an_empty_file_or_no_header_says_so(tmp_path, content, words) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(content)
    assert error_of(path) == f"{path} {words} (expected {WHAT})"


def test_a_spreadsheet_s_byte_order_mark_and_spaces_are_not_in_the_names(tmp_path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes("site, night ,count\r\nGarden,2024-07-01,3\r\n".encode("utf-8-sig"))
    assert read(path) == [{"site": "Garden", "night": "2024-07-01", "count": "3"}]


def test_not_utf8_is_named_in_the_header_or_in_a_later_row(tmp_path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes("site,night,count\n".encode("utf-16"))
    assert error_of(path) == f"{path} is not UTF-8 text (expected {WHAT})"
    # far past the first block the file is decoded in: raised while the rows are read
    path.write_bytes(b"site,night,count\n" + b"Garden,2024-07-01,3\n" * 5000 + b"Caf\xe9,x,1\n")
    assert error_of(path) == f"{path} is not UTF-8 text (expected {WHAT})"


def test_a_folder_or_a_missing_file_is_named(tmp_path) -> None:
    assert error_of(tmp_path) == f"{tmp_path} is a folder, not a file (expected {WHAT})"
    missing = tmp_path / "none.csv"
    assert error_of(missing) == f"{missing} not found (expected {WHAT})"


def test_a_bad_csv_row_names_its_line(tmp_path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("site,night,count\nGarden,2024-07-01,3\nGarden,2024-07-02," + "9" * 50)
    limit = csv.field_size_limit()
    try:
        csv.field_size_limit(20)
        assert error_of(path).startswith(f"{path}, line 3: field larger than field limit")
    finally:
        csv.field_size_limit(limit)


def test_rows_and_records_are_the_csv_module_s(tmp_path) -> None:
    text = 'b,a,c\n1,2,3\n\n4,5\n6,7,8,9,10\n\'=x,"y\nz",\n'
    path = tmp_path / "t.csv"
    path.write_text(text, encoding="utf-8")
    with csv_table(path, ("a",), WHAT, TallyError) as table:
        assert table.header == ["b", "a", "c"]
        assert list(table.rows) == list(csv.reader(io.StringIO(text)))[1:]
    with csv_table(path, ("a",), WHAT, TallyError) as table:
        assert list(table.records()) == list(csv.DictReader(io.StringIO(text)))


def test_the_caller_s_own_errors_pass_through(tmp_path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("site,night,count\nGarden,2024-07-01,3\n", encoding="utf-8")
    with pytest.raises(TallyError, match="^line 2: mine$"):
        with csv_table(path, ("site",), WHAT, TallyError):
            raise TallyError("line 2: mine")


def test_moths_dwc_names_the_missing_columns_of_nights_csv_in_one_line(tmp_path, capsys):
    occurrences, deployments, nights = (tmp_path / n for n in ("o.csv", "d.csv", "n.csv"))
    occurrences.write_text(",".join(OCCURRENCE_COLUMNS) + "\n", encoding="utf-8")
    deployments.write_text("deployment,latitude,longitude\nA,52.1,5.2\n", encoding="utf-8")
    nights.write_text("deployment,night\nA,2024-07-01\n", encoding="utf-8")
    output = tmp_path / "archive"
    args = [str(occurrences), "--deployments", str(deployments), "--output", str(output)]
    assert dwc([*args, "--core", "event", "--nights", str(nights)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("moths-dwc: error: ")
    assert f"{nights} lacks column(s) frames, first_frame, last_frame (expected a nights.csv" in err
    assert not output.exists()
