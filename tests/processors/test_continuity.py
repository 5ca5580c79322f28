"""The offset continuity check: a skipped range restarts the process, a re-delivery does not."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import faust
import pytest

from meterline.processors.continuity import OffsetContinuity


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)


class Restarted(Exception):
    pass


def restart(reason: str) -> None:
    raise Restarted(reason)


@pytest.fixture
def app(tmp_path: Any) -> faust.App:
    return faust.App("continuity-test", broker="kafka://127.0.0.1:1", store="memory://",
                     datadir=str(tmp_path))


def committed(app: faust.App, offsets: dict[TP, int]) -> None:
    """What faust's consumer holds after seeking to the group's committed offsets."""
    consumer: Any = app.consumer
    consumer._committed_offset.update(offsets)


def test_the_first_message_after_assignment_is_judged_against_the_committed_offset(
        app: faust.App) -> None:
    check = OffsetContinuity(app, restart=restart)
    committed(app, {TP("events", 0): 100})
    with pytest.raises(Restarted, match=r"events\[0\]@100..104"):
        check.check(Message("events", 0, 105))


def test_consecutive_offsets_and_re_deliveries_pass_a_gap_restarts(app: faust.App) -> None:
    check = OffsetContinuity(app, restart=restart)
    committed(app, {TP("events", 1): 10})
    for offset in (10, 11, 12, 11, 12, 13):  # 11 and 12 again: a re-delivery after a seek
        check.check(Message("events", 1, offset))
    with pytest.raises(Restarted, match=r"events\[1\]@14..19"):
        check.check(Message("events", 1, 20))


def test_no_committed_offset_means_nothing_to_judge_the_first_message_by(
        app: faust.App) -> None:
    check = OffsetContinuity(app, restart=restart)
    check.check(Message("by-team", 0, 500))  # a fresh group starts wherever the reset put it
    check.check(Message("by-team", 0, 501))


def test_a_revoked_partition_is_judged_afresh_when_it_comes_back(app: faust.App) -> None:
    check = OffsetContinuity(app, restart=restart)
    committed(app, {TP("events", 0): 0})
    check.check(Message("events", 0, 0))
    asyncio.run(app.on_partitions_revoked.send({TP("events", 0)}))
    committed(app, {TP("events", 0): 700})  # another worker moved it on meanwhile
    check.check(Message("events", 0, 700))
