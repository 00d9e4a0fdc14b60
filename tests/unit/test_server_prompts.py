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
