"""Prompt text: which session, how long ago, how many messages, what it cost."""

from __future__ import annotations

import pytest

from opendev_snapshot.server.prompts import describe, describe_age


@pytest.mark.parametrize(
    "ms, text",
    [(0, "0 seconds"), (1_000, "1 second"), (59_999, "59 seconds"), (60_000, "1 minute"), (5 * 60_000, "5 minutes"),
     (3_600_000, "1 hour"), (7_200_000 + 5, "2 hours"), (86_400_000 * 3, "3 days"), (-5_000, "0 seconds")],
)
def test_describe_age(ms, text):
    assert describe_age(ms) == text


def test_describe_names_session_age_messages_cost():
    listing = {"sessionId": "abc-1", "snapshotTimestampMs": 1_000_000, "projectDir": "/home/u/proj/", "messageCount": 1, "costUsd": 0.125}
    text = describe(listing, now_ms=1_000_000 + 2 * 3_600_000)
    assert text == "OpenDev session abc-1 (proj) was interrupted 2 hours ago: 1 message, $0.12. Recover it?"


def test_describe_makes_snapshot_text_printable_and_money_uniform():
    listing = {"sessionId": "abc", "snapshotTimestampMs": 0, "projectDir": "/p/\x1b]52;c;AAAA\x07evil\u202e", "messageCount": 2,
               "costUsd": 1234.5}
    text = describe(listing, now_ms=90_000)
    assert "\x1b" not in text and "\u202e" not in text and "\x07" not in text
    assert "$1,234.50" in text and "1 minute ago" in text and "2 messages" in text


def test_describe_names_the_notebook_of_a_kernel_session():
    listing = {"sessionId": "k1", "snapshotTimestampMs": 0, "projectDir": "/p/proj", "messageCount": 0, "costUsd": 0.0,
               "kind": "ipython", "notebook": "/p/proj/analysis.ipynb"}
    text = describe(listing, now_ms=0)
    assert text.startswith("Notebook session k1 (analysis.ipynb) was interrupted 0 seconds ago")
