"""Sampling profiles of running roles with py-spy, summarised as the functions that cost most.

``Profiler`` attaches ``py-spy record`` to each process for the span of a
``with`` block (the bench's drain phase) and writes its collapsed stacks to
``<dir>/<name>.txt``: one line per distinct stack, frames joined by ``;``,
then the sample count. Python frames only: the time a C extension
(librdkafka, chdb, pydantic-core, msgspec) spends counts as its Python
caller's self time, and idle threads are left out. ``--nonblocking``: the
roles are not paused to be sampled, so the profiled run's rates stay close
to an unprofiled one's. ``top``
reads a file back as the functions with the most samples on top of the stack
(self time) and on the stack at all (inclusive), in percent of all samples.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path
from types import TracebackType

#: "function (file.py:line)" in py-spy's frames; the line number is dropped so one
#: function's lines add up.
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


class Profiler:
    """py-spy on ``pids`` (name → pid) while the block runs; a no-op without py-spy."""

    def __init__(self, directory: Path, pids: dict[str, int], rate: int = 97) -> None:
        self.directory = directory
        self._pids = pids
        self._rate = rate
        self._running: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Profiler:
        if shutil.which("py-spy") is None:
            print("py-spy not found: no profiles (pip install py-spy)", flush=True)
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        for name, pid in self._pids.items():
            self._running.append(subprocess.Popen(
                ["py-spy", "record", "--pid", str(pid), "--rate", str(self._rate),
                 "--format", "raw", "--nonblocking", "--output", str(self.path(name))],
                stdout=subprocess.DEVNULL))
        return self

    def path(self, name: str) -> Path:
        return self.directory / f"{name.replace(' ', '-')}.txt"

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for process in self._running:
            process.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for process in self._running:
            process.wait(60)


def frame_name(frame: str) -> str:
    match = _FRAME.match(frame)
    if match is None:
        return frame
    file = Path(match["file"]).name if match["file"] else ""
    return f"{match['function']} ({file})" if file else match["function"]


def top(path: Path, count: int = 12) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """The ``count`` costliest functions in ``path``: (self %, inclusive %), each best first."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        n = int(samples)
        total += n
        frames = [frame_name(frame) for frame in stack.split(";")]
        own[frames[-1]] += n
        for name in set(frames):
            inclusive[name] += n
    if not total:
        return [], []
    return ([(name, 100 * n / total) for name, n in own.most_common(count)],
            [(name, 100 * n / total) for name, n in inclusive.most_common(count)])


def report(profiler: Profiler, names: list[str], count: int = 12) -> None:
    """Print each profile's top functions as a markdown table."""
    for name in names:
        path = profiler.path(name)
        if not path.exists():
            continue
        own, inclusive = top(path, count)
        print(f"\n{name} (py-spy, {path}): self % | inclusive %\n")
        print("| self % | function | inclusive % | function |\n|---:|---|---:|---|")
        for (a, pa), (b, pb) in zip(own, inclusive, strict=False):
            print(f"| {pa:.1f} | {a} | {pb:.1f} | {b} |")
