"""The CLI's table renderer: fitted to a width, ids never cut."""

from __future__ import annotations

import pytest

from opendev_snapshot.cli_table import Column, cell_width, cut_left, render, tsv

COLUMNS = [
    Column("ID", keep=True),
    Column("STATE", keep=True),
    Column("N", drop=1, right=True, stacked="{} messages"),
    Column("COST", drop=2, right=True),
    Column("PATH", squeeze=8),
]
ROWS = [
    ["short", "running", "3", "$0.42", "/home/dev/projects/web-application-frontend"],
    ["a-much-longer-session-id-0042", "interrupted", "120", "$12.50", "/srv/x"],
]


@pytest.mark.parametrize(
    "text,width", [("abc", 3), ("", 0), ("日本語", 6), ("e\u0301", 1), ("ｆｕｌｌ", 8), ("a\u2026", 2)]
)
def test_cell_width(text, width):
    assert cell_width(text) == width


@pytest.mark.parametrize(
    "text,cells,expected",
    [("/home/dev/projects/web", 10, "\u2026jects/web"), ("short", 10, "short"), ("/日本/語", 4, "\u2026/語"), ("abc", 1, "\u2026")],
)
def test_cut_left(text, cells, expected):
    assert cut_left(text, cells) == expected
    assert cell_width(cut_left(text, cells)) <= cells


def test_wide_enough_shows_everything_aligned():
    out = render(COLUMNS, ROWS, 200).splitlines()
    assert out == [
        "ID                             STATE          N    COST  PATH",
        "short                          running        3   $0.42  /home/dev/projects/web-application-frontend",
        "a-much-longer-session-id-0042  interrupted  120  $12.50  /srv/x",
    ]


def test_narrower_squeezes_the_path_then_drops_columns_in_order():
    out = render(COLUMNS, ROWS, 90).splitlines()
    assert out[0].split() == ["ID", "STATE", "N", "COST", "PATH"]
    assert out[1].endswith("  \u2026rojects/web-application-frontend")  # the start of the path goes first
    out = render(COLUMNS, ROWS, 80).splitlines()
    assert out[0].split() == ["ID", "STATE", "COST", "PATH"]  # then N
    out = render(COLUMNS, ROWS, 70).splitlines()
    assert out[0].split() == ["ID", "STATE", "PATH"]  # then COST
    out = render(COLUMNS, ROWS, 56).splitlines()
    assert out[1] == "short                          running      \u2026on-frontend"  # then the path shrinks
    for width in (90, 80, 70, 56):
        assert all(cell_width(line) <= width for line in render(COLUMNS, ROWS, width).splitlines())


def test_too_narrow_for_a_table_stacks_each_row_and_keeps_ids_whole():
    assert render(COLUMNS, ROWS, 50).split("\n\n") == [
        "short\n  running, 3 messages, $0.42\n  /home/dev/projects/web-application-frontend",
        "a-much-longer-session-id-0042\n  interrupted, 120 messages, $12.50\n  /srv/x",
    ]
    assert render(COLUMNS, ROWS, 24).split("\n\n")[1] == (
        "a-much-longer-session-id-0042\n  interrupted\n  120 messages, $12.50\n  /srv/x"
    )


def test_wide_flag_ignores_the_width():
    assert render(COLUMNS, ROWS, 20, wide=True) == render(COLUMNS, ROWS, None)


def test_tsv_has_no_header_and_no_cutting():
    assert tsv(ROWS) == "short\trunning\t3\t$0.42\t/home/dev/projects/web-application-frontend\na-much-longer-session-id-0042\tinterrupted\t120\t$12.50\t/srv/x"
