"""The spool on a real file system: append, recover, confirm, release, damage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from meterline.ingest.segment import CORRUPT_DIR, HEADER_BYTES, segment_name
from meterline.ingest.spool import UNCONFIRMED_DIR, Spool, SpoolFull, SpoolLocked
from meterline.schemas import new_request_id
from meterline.schemas.watermark import request_id_bytes
from tests.harness import REPO_ROOT, wait_until


def rid(now_ms: int | None = None) -> bytes:
    return request_id_bytes(new_request_id(now_ms))


def fill(spool: Spool, count: int, size: int = 100) -> list[bytes]:
    ids = [rid() for _ in range(count)]
    for number, request_id in enumerate(ids):
        spool.append(request_id, f"{number:06d}".encode().ljust(size, b"."))
    return ids


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def test_records_read_back_in_order_and_survive_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=1000)
    ids = fill(spool, 25)
    assert spool.outstanding_from(1, 100) == list(range(1, 26))
    assert spool.read(7) == (ids[6], b"000006".ljust(100, b"."))
    assert len(segments(tmp_path)) == 4  # 8 frames of 132 bytes pass 1000: seqs 1, 9, 17, 25
    spool.close()

    reopened = Spool(tmp_path, segment_bytes=1000)
    assert reopened.stats().depth == 25
    assert reopened.first_outstanding() == 1
    assert reopened.read(25) == (ids[24], b"000024".ljust(100, b"."))
    assert reopened.append(rid(), b"next") == 26  # sequence continues after recovery
    reopened.close()


def test_confirmed_closed_segments_are_deleted_active_one_kept(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=1000)
    ids = fill(spool, 25)
    assert spool.confirm([*ids[:10], rid()]) == 10  # an id it never held is ignored
    assert spool.release() == 1  # only the first segment (seqs 1-8) is fully confirmed
    assert spool.first_outstanding() == 11
    assert spool.confirm(ids[10:]) == 15
    spool.release()
    assert [p.name for p in segments(tmp_path)] == [segment_name(25)]  # the active one stays
    assert spool.stats().depth == 0
    assert spool.read(20) is None
    spool.close()


def test_a_killed_process_loses_nothing_it_appended(tmp_path: Path) -> None:
    """SIGKILL right after appending: written records are in the page cache, not lost."""
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from meterline.ingest.spool import Spool
        from meterline.schemas import new_request_id
        from meterline.schemas.watermark import request_id_bytes
        spool = Spool(Path({str(tmp_path)!r}), fsync_interval_s=60)
        for n in range(500):
            spool.append(request_id_bytes(new_request_id()), b"payload-%d" % n)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, timeout=60)
    assert result.returncode == -signal.SIGKILL
    spool = Spool(tmp_path)
    assert spool.stats().depth == 500
    assert spool.read(500) is not None and spool.read(500)[1] == b"payload-499"  # type: ignore[index]
    spool.close()


@pytest.mark.parametrize("damage", ["torn_tail", "zero_tail", "bit_flip"])
def test_damaged_segment_keeps_good_records_and_moves_bad_tail_aside(
        tmp_path: Path, damage: str) -> None:
    spool = Spool(tmp_path)
    fill(spool, 10)
    spool.close()
    path = segments(tmp_path)[0]
    data = bytearray(path.read_bytes())
    frame = HEADER_BYTES + 100
    if damage == "torn_tail":
        data = data[:-30]  # the last frame half written
        kept = 9
    elif damage == "zero_tail":
        data += bytes(4096)  # zero-filled blocks after a power cut
        kept = 10
    else:
        data[4 * frame + HEADER_BYTES + 5] ^= 0x01  # one bit in the fifth record's payload
        kept = 4
    path.write_bytes(bytes(data))

    recovered = Spool(tmp_path)
    assert recovered.stats().depth == kept
    assert recovered.stats().quarantined == 1
    assert recovered.outstanding_from(1, 100) == list(range(1, kept + 1))
    assert path.stat().st_size == kept * frame
    reasons = list((tmp_path / CORRUPT_DIR).glob("*.reason"))
    assert len(reasons) == 1 and reasons[0].read_text().strip()
    assert len(list((tmp_path / CORRUPT_DIR).glob("*.bad"))) == 1
    assert recovered.append(rid(), b"after") == kept + 1
    recovered.close()
    assert Spool(tmp_path).stats().quarantined == 0  # the fix is durable: clean next time


def test_unparsable_segment_file_is_moved_aside(tmp_path: Path) -> None:
    (tmp_path / "garbage.seg").write_bytes(b"\x00" * 50)
    (tmp_path / segment_name(1)).write_bytes(os.urandom(3))
    spool = Spool(tmp_path)
    assert spool.stats().depth == 0
    assert spool.stats().quarantined == 2
    spool.close()


def test_cap_refuses_appends_and_alarm_follows_usage(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=4096, max_bytes=64 * 1024, alarm_ratio=0.5)
    ids = fill(spool, 248, size=100)  # 248 * 132 bytes = 32736, just under half
    assert not spool.stats().alarm
    ids += fill(spool, 2, size=100)
    assert spool.stats().alarm
    with pytest.raises(SpoolFull):
        while True:
            ids.append(rid())
            spool.append(ids[-1], b"z" * 100)
    assert spool.stats().bytes <= 64 * 1024
    spool.confirm(ids)
    spool.release()
    assert not spool.stats().alarm
    spool.close()


def test_segment_unconfirmed_long_after_later_ones_is_moved_aside(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=1000, unconfirmed_grace_s=60)
    old_ms = int(time.time() * 1000) - 3_600_000
    dead_lettered = rid(old_ms)
    spool.append(dead_lettered, b"x" * 1000)  # fills the first segment alone
    spool.append(rid(), b"y")
    assert spool.release() == 0
    spool.confirm([rid()])  # the sink stored something an hour newer
    assert spool.release() == 1
    assert (tmp_path / UNCONFIRMED_DIR / segment_name(1)).exists()
    assert "unconfirmed" in (tmp_path / UNCONFIRMED_DIR / segment_name(1)).with_suffix(
        ".reason").read_text()
    assert spool.stats().abandoned == 1 and spool.stats().depth == 1
    spool.close()


def test_second_owner_of_a_spool_directory_is_refused(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    with pytest.raises(SpoolLocked):
        Spool(tmp_path)
    spool.close()
    Spool(tmp_path).close()


def test_group_commit_fsyncs_far_fewer_times_than_appends(tmp_path: Path) -> None:
    spool = Spool(tmp_path, fsync_interval_s=0.02)
    for _ in range(20):
        fill(spool, 100)
        time.sleep(0.005)
    wait_until(lambda: spool.stats().unsynced == 0, 5, message="everything fsynced")
    stats = spool.stats()
    assert stats.appended == 2000
    assert 1 <= stats.fsyncs <= 100
    spool.close()


def test_the_index_of_unconfirmed_envelopes_is_compact(tmp_path: Path) -> None:
    """A store outage costs disk, not memory: sealed segments index an envelope in about
    25 bytes (issue 18: the gateway's RSS bounded through an hour of outage)."""
    import tracemalloc

    spool = Spool(tmp_path, segment_bytes=64 * 1024, fsync_interval_s=60)
    ids = [rid() for _ in range(40_000)]
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    for request_id in ids:
        spool.append(request_id, b"x" * 60)
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    per_envelope = (after - before) / len(ids)
    assert spool.stats().depth == len(ids)
    assert per_envelope < 40, f"{per_envelope:.0f} bytes of index per unconfirmed envelope"
    # confirmations in any order find their sealed segments; every segment is released
    shuffled = ids[::-1][::2] + ids[::-1][1::2]
    assert spool.confirm(shuffled) == len(ids)
    assert spool.confirm(ids[:10]) == 0  # confirmed twice: matches nothing the second time
    assert spool.stats().depth == 0
    spool.release()
    assert len(segments(tmp_path)) == 1  # the active segment only
    spool.close()


def test_replay_reads_only_outstanding_records_across_sealed_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=1000)
    ids = fill(spool, 40)
    spool.confirm(ids[1::2])  # every second one stored
    assert spool.outstanding_from(1, 100) == list(range(1, 41, 2))
    assert spool.outstanding_from(10, 3) == [11, 13, 15]
    assert spool.read(2) is None and spool.read(3) == (ids[2], b"000002".ljust(100, b"."))
    assert spool.read(41) is None and spool.read(0) is None
    spool.close()
    reopened = Spool(tmp_path, segment_bytes=1000)  # recovery indexes every record again
    assert reopened.stats().depth == 40
    reopened.confirm(ids)
    assert reopened.stats().depth == 0 and reopened.first_outstanding() is None
    reopened.close()
