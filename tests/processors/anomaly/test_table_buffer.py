"""TableBuffer: batch-local writes, each changed key to the changelog once, on its partition."""

from __future__ import annotations

from typing import Any

from meterline.processors.anomaly.table_buffer import TableBuffer


class ChangelogRecorder:
    """The two faust ``Table`` members ``TableBuffer`` uses: ``data`` and ``send_changelog``.

    Not a Kafka fake: it stands for the table object only; the table and its
    changelog on a real broker are covered by the end-to-end restart test.
    """

    def __init__(self) -> None:
        self.data: dict[str, Any] = {"old": 1, "gone": 2}
        self.sent: list[tuple[int, str, Any]] = []

    def send_changelog(self, partition: int, key: str, value: Any, **_: Any) -> None:
        self.sent.append((partition, key, value))


def test_writes_are_seen_at_once_and_sent_once_per_batch() -> None:
    table = ChangelogRecorder()
    state = TableBuffer(table)
    state.partition = 1
    for count in range(5):
        state["new"] = count
        assert state["new"] == count
    assert state.get("old") == 1 and state.get("missing") is None
    state.partition = 0
    assert state.pop("gone") == 2 and "gone" not in state
    assert table.sent == [] and table.data["gone"] == 2
    assert state.flush() == 2
    assert table.sent == [(1, "new", 4), (0, "gone", None)]
    assert table.data == {"old": 1, "new": 4}
    assert state.flush() == 0
