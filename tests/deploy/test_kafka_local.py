"""``deploy/kafka/kafka-local``: where Maven Central cannot be reached, one explicit line and
status 3 (the Kafka tier skips with it), never a silent skip or a generic failure.

The network is taken away with a network namespace of the test's own (``unshare -n``), and
Maven gets an empty local repository and the script an empty cache, so nothing is found
locally. The happy path (fetch, start, restart keeping the data) runs in every Kafka-tier test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.backends import EXIT_UNREACHABLE, KAFKA_LOCAL


def _can_unshare_network() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_unshare_network(), reason="needs unshare -n (root) to cut the network")
def test_unreachable_maven_central_is_one_line_and_status_3(tmp_path: Path) -> None:
    env = {**os.environ, "METERLINE_KAFKA_HOME": str(tmp_path / "cache"),
           "MAVEN_OPTS": f"-Dmaven.repo.local={tmp_path / 'm2'}"}
    result = subprocess.run(["unshare", "-n", str(KAFKA_LOCAL), "fetch"], env=env,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == EXIT_UNREACHABLE, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("kafka tier skipped: Maven Central not reachable (")
    assert not (tmp_path / "cache" / "lib").exists()
