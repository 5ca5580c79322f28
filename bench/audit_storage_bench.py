"""Audit-body storage benchmark: a month of coding-agent calls, stored per call or per distinct message.

Coding agents resend the whole conversation on every call. This simulates a
month of sessions for ``Organisation.demo`` (its developers, teams, repos and
coding tools, seeded): per developer, tool and working day, sessions of 5 to
80 calls (log-uniform) until the tool's daily call rate is used up. A session
is what the tool sends, shape for shape:

- Claude Code, ``anthropic.messages``: a 14 kB system prompt plus a
  per-session environment block, 24 kB of tool definitions, the repo's
  CLAUDE.md in the first user message, ``tool_use``/``tool_result`` turns,
  and a ``cache_control`` marker on the last block of the last message
  (Anthropic's incremental caching pattern), which moves every call;
- Codex, ``openai.responses``: 10 kB instructions, an environment context,
  the repo's AGENTS.md, encrypted reasoning items (random base64, resent
  every call with ``store: false``), ``shell`` calls and their JSON output;
- Cursor, ``openai.chat``: a 5 kB system prompt, ``tool_calls`` and ``tool``
  messages.

Tool results are this repository's own files: ``Read`` slices with line
numbers, grep hits, pytest runs with tracebacks, unified diffs, edits, file
lists; prose is its docs. Every call's payload is split by the gateway's own
``policy.messages.request_messages``.

Measured: (1) request bodies as sent, every call; (2) message text, every
call; (3) distinct message text (content-addressed); (4) ClickHouse: the
distinct messages in ``audit_bodies`` (real migrations) and, beside it, the
bodies per call in a table with the same codec, ordered by request id (time)
as a per-call audit table is, both merged to one part, bytes from
``system.parts``/``system.columns``; (5) scans: messages and bytes scanned
once vs on every call, CPU at the rate ``SensitiveScanner(DEFAULT_KINDS)``
measures here on a sample of the distinct messages.

Run: ``python3 bench/audit_storage_bench.py [--quick] [--seed 7] [--teams 3]``
(about 90 s on 2 cores; ``--quick``: one team, one week, about 10 s).
"""

from __future__ import annotations

import argparse
import difflib
import heapq
import math
import random
import shutil
import string
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from meterline.policy.messages import message_hash, request_messages  # noqa: E402
from meterline.schemas import ClickHouseSettings, Surface  # noqa: E402
from meterline.simulator.organisation import Developer, Organisation  # noqa: E402
from meterline.sinks import connect, migrate  # noqa: E402

DATABASE = "bench_audit"
SURFACES: dict[str, Surface] = {"claude-code": "anthropic.messages", "codex": "openai.responses",
                                "cursor": "openai.chat"}
TOOL_WEIGHTS = {"read": 30, "bash": 20, "edit": 20, "grep": 15, "glob": 5, "todo": 10}
BATCH_BYTES = 64 << 20
BODY_COLUMNS = ["message_hash", "body_policy", "team", "repo", "role", "first_request_id",
                "first_seen", "expires_at", "chars", "findings", "text"]
NAIVE_COLUMNS = ["request_id", "received_at", "team", "body"]
Json = dict[str, Any]


class Corpus:
    """Deterministic text from this repository: code files, docs prose, paths."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        files = sorted(p for p in REPO_ROOT.rglob("*") if p.is_file() and p.suffix in
                       {".py", ".sql", ".md", ".yaml", ".toml", ".html"} and not any(
                           part.startswith(".") or part in {"meterline", "__pycache__",
                                                            "test-artifacts"}
                           for part in p.relative_to(REPO_ROOT).parts[:-1]))
        self.code = [(str(p.relative_to(REPO_ROOT)), p.read_text(errors="replace").splitlines())
                     for p in files if p.suffix != ".md"]
        self.code = [(path, lines) for path, lines in self.code if len(lines) >= 20]
        self.paths = [path for path, _ in self.code]
        self.paragraphs = [para.replace("\n", " ") for p in files if p.suffix == ".md"
                           for para in p.read_text().split("\n\n")
                           if len(para) > 80 and not para.startswith(("|", "```", "#"))]

    def prose(self, low: int, high: int) -> str:
        target, parts, size = self.rng.randint(low, high), list[str](), 0
        while size < target:
            parts.append(self.rng.choice(self.paragraphs))
            size += len(parts[-1]) + 2
        return "\n\n".join(parts)[:target]

    def lines(self, low: int, high: int) -> tuple[str, int, list[str]]:
        path, lines = self.rng.choice(self.code)
        count = min(len(lines), self.rng.randint(low, high))
        first = self.rng.randrange(len(lines) - count + 1)
        return path, first + 1, lines[first:first + count]

    def numbered(self, low: int, high: int) -> tuple[str, str]:
        path, first, lines = self.lines(low, high)
        return path, "\n".join(f"{first + i:>6}\t{line}" for i, line in enumerate(lines))

    def grep(self) -> str:
        hits = []
        for _ in range(self.rng.randint(8, 60)):
            path, first, lines = self.lines(1, 1)
            hits.append(f"{path}:{first}:{lines[0].strip()}")
        return "\n".join(hits)

    def tests(self) -> str:
        out = ["============================= test session starts ==============================",
               f"platform linux -- Python 3.11.7, pytest-8.3.3, pluggy-1.5.0\ncollected "
               f"{self.rng.randint(20, 400)} items\n"]
        out += [f"{path} {'.' * self.rng.randint(1, 40)}{self.rng.choice(['', '', 'F', 's'])}"
                for path in self.rng.sample(self.paths, self.rng.randint(4, 25))]
        if self.rng.random() < 0.5:
            path, first, lines = self.lines(10, 60)
            out += ["=================================== FAILURES ===================================",
                    *(f"    {line}" for line in lines), f"E   AssertionError: assert "
                    f"{self.rng.randint(0, 999)} == {self.rng.randint(0, 999)}", f"{path}:{first}: "
                    "AssertionError"]
        out.append(f"==== {self.rng.randint(1, 5)} failed, {self.rng.randint(20, 400)} passed in "
                   f"{self.rng.uniform(0.5, 90):.2f}s ====")
        return "\n".join(out)

    def edit(self) -> tuple[str, str, str]:
        path, _, lines = self.lines(3, 40)
        new = [line.replace("self", "this") if self.rng.random() < 0.3 else line for line in lines]
        new.insert(self.rng.randrange(len(new) + 1), "    # " + self.prose(30, 90))
        return path, "\n".join(lines), "\n".join(new)

    def diff(self) -> str:
        out: list[str] = []
        for _ in range(self.rng.randint(1, 4)):
            path, old, new = self.edit()
            out += difflib.unified_diff(old.splitlines(), new.splitlines(), f"a/{path}",
                                        f"b/{path}", lineterm="")
        return "\n".join(out)

    def token(self, prefix: str, size: int = 24) -> str:
        return prefix + "".join(self.rng.choices(string.ascii_letters + string.digits, k=size))


@dataclass(slots=True)
class Action:
    """One tool call the model makes, neutral of API shape: name, input, output."""

    kind: str
    args: Json
    output: str


def act(corpus: Corpus, rng: random.Random) -> Action:
    kind = rng.choices(list(TOOL_WEIGHTS), list(TOOL_WEIGHTS.values()))[0]
    if kind == "read":
        path, text = corpus.numbered(40, 400)
        return Action(kind, {"file_path": path}, text)
    if kind == "grep":
        return Action(kind, {"pattern": corpus.prose(4, 12).split(" ")[0], "path": "."},
                      corpus.grep())
    if kind == "bash":
        command = rng.choice(["python3 -m pytest -x -q tests/", "git diff", "git status && git "
                              "log --oneline -5", "make lint"])
        return Action(kind, {"command": command},
                      corpus.diff() if command == "git diff" else corpus.tests())
    if kind == "edit":
        path, old, new = corpus.edit()
        snippet = corpus.numbered(8, 16)[1]
        return Action(kind, {"file_path": path, "old_string": old, "new_string": new},
                      f"The file {path} has been updated. Here's the result of running `cat -n` "
                      f"on a snippet of the edited file:\n{snippet}")
    if kind == "glob":
        return Action(kind, {"pattern": "**/*.py"}, "\n".join(rng.sample(corpus.paths, rng.randint(
            10, 60))))
    todos = [{"content": corpus.prose(20, 80), "status": rng.choice(["pending", "completed"]),
              "activeForm": corpus.prose(20, 60)} for _ in range(rng.randint(3, 8))]
    return Action(kind, {"todos": todos}, "Todos have been modified successfully. Ensure that you "
                  "continue to use the todo list to track your progress.")


@dataclass(slots=True)
class Session:
    """One conversation: what every call sends is ``messages[:ends[i]]`` after the head."""

    tool: str
    developer: Developer
    repo: str
    head: Json
    messages: list[Json] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    times: list[datetime] = field(default_factory=list)

    def payload(self, call: int) -> Json:
        sent = self.messages[:self.ends[call]]
        if self.tool == "claude-code":  # the cache breakpoint moves to the newest block
            last = dict(sent[-1])
            last["content"] = [*last["content"][:-1], {**last["content"][-1],
                                                       "cache_control": {"type": "ephemeral"}}]
            return {**self.head, "messages": [*sent[:-1], last]}
        if self.tool == "codex":
            return {**self.head, "input": sent}
        return {**self.head, "messages": [self.head["messages"][0], *sent]}


class Shapes:
    """The constant parts of each tool's requests, and its message shapes."""

    def __init__(self, corpus: Corpus) -> None:
        self.corpus = corpus
        self.system = {tool: corpus.prose(size, size) for tool, size in
                       (("claude-code", 14_000), ("codex", 10_000), ("cursor", 5_000))}
        self.tools = {tool: [{"name": corpus.token("tool_", 8), "description": corpus.prose(
            400, 2500), "input_schema": {"type": "object", "properties": {"arg": {
                "type": "string", "description": corpus.prose(40, 200)}}}} for _ in range(count)]
            for tool, count in (("claude-code", 16), ("codex", 3), ("cursor", 10))}
        self.repo_notes: dict[str, str] = {}

    def notes(self, repo: str) -> str:
        return self.repo_notes.setdefault(repo, self.corpus.prose(1_500, 4_000))

    def head(self, tool: str, model: str, repo: str, env: str) -> Json:
        if tool == "claude-code":
            return {"model": model, "max_tokens": 32_000, "stream": True,
                    "tools": self.tools[tool], "metadata": {"user_id": self.corpus.token("user_")},
                    "system": [{"type": "text", "text": "You are Claude Code."},
                               {"type": "text", "text": self.system[tool] + env,
                                "cache_control": {"type": "ephemeral"}}]}
        if tool == "codex":
            return {"model": model, "instructions": self.system[tool], "tools": self.tools[tool],
                    "store": False, "stream": True, "reasoning": {"effort": "medium"},
                    "include": ["reasoning.encrypted_content"]}
        return {"model": model, "stream": True, "tools": self.tools[tool], "messages": [
            {"role": "system", "content": self.system[tool] + env}]}

    def user(self, tool: str, text: str) -> Json:
        if tool == "claude-code":
            return {"role": "user", "content": [{"type": "text", "text": text}]}
        if tool == "codex":
            return {"type": "message", "role": "user",
                    "content": [{"type": "input_text", "text": text}]}
        return {"role": "user", "content": text}

    def step(self, tool: str, rng: random.Random, actions: list[Action]) -> list[Json]:
        """The model's reply (preamble text and tool calls, or a final answer if no actions)
        and the tool results that follow it, as this tool sends them back."""
        text = self.corpus.prose(80, 500) if actions else self.corpus.prose(300, 2500)
        ids = [self.corpus.token("toolu_" if tool == "claude-code" else "call_") for _ in actions]
        reply: list[Json]
        results: list[Json]
        if tool == "claude-code":
            reply = [{"role": "assistant", "content": [{"type": "text", "text": text}, *(
                {"type": "tool_use", "id": i, "name": a.kind, "input": a.args}
                for i, a in zip(ids, actions, strict=True))]}]
            results = [{"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": i, "content": a.output}
                for i, a in zip(ids, actions, strict=True)]}] if actions else []
        elif tool == "codex":
            reasoning: Json = {"type": "reasoning", "summary": [], "encrypted_content":
                         self.corpus.token("gAAAAA", rng.randint(800, 3000))}
            reply = [reasoning, *([] if actions and rng.random() < 0.5 else [
                {"type": "message", "role": "assistant",
                 "content": [{"type": "output_text", "text": text}]}])]
            reply += [{"type": "function_call", "name": "shell", "call_id": i, "arguments":
                       orjson.dumps({"command": ["bash", "-lc", a.kind], **a.args}).decode()}
                      for i, a in zip(ids, actions, strict=True)]
            results = [{"type": "function_call_output", "call_id": i, "output": orjson.dumps(
                {"output": a.output, "metadata": {"exit_code": 0, "duration_seconds": 0.4}}
            ).decode()} for i, a in zip(ids, actions, strict=True)]
        else:
            reply = [{"role": "assistant", "content": text, **({"tool_calls": [
                {"id": i, "type": "function", "function": {
                    "name": a.kind, "arguments": orjson.dumps(a.args).decode()}}
                for i, a in zip(ids, actions, strict=True)]} if actions else {})}]
            results = [{"role": "tool", "tool_call_id": i, "content": a.output}
                       for i, a in zip(ids, actions, strict=True)]
        return reply + results


def session(shapes: Shapes, rng: random.Random, tool: str, developer: Developer,
            start: datetime, calls: int) -> Session:
    corpus, repo = shapes.corpus, rng.choice(developer.repos)
    model = rng.choice([p.model for t in developer.tools if t.tool == tool for p in t.models])
    env = (f"\n<env>\nWorking directory: /home/{developer.name}/src/{repo}\nToday's date: "
           f"{start:%Y-%m-%d}\nRecent commits:\n" + corpus.grep()[:600] + "\n</env>")
    s = Session(tool, developer, repo, shapes.head(tool, model, repo, env))
    first = corpus.prose(80, 1200)
    if tool == "claude-code":
        s.messages.append({"role": "user", "content": [
            {"type": "text", "text": f"<system-reminder>\n{shapes.notes(repo)}\n</system-reminder>"},
            {"type": "text", "text": first}]})
    else:
        if tool == "codex":
            s.messages += [shapes.user(tool, env), shapes.user(tool, shapes.notes(repo))]
        s.messages.append(shapes.user(tool, first))
    at = start
    for call in range(calls):
        s.ends.append(len(s.messages))
        s.times.append(at)
        if call == calls - 1:
            break
        if rng.random() < 0.85:
            actions = [act(corpus, rng) for _ in range(1 if rng.random() < 0.8 else
                                                       rng.randint(2, 3))]
            s.messages += shapes.step(tool, rng, actions)
            at += timedelta(seconds=rng.uniform(5, 40) + rng.uniform(1, 20))
        else:
            s.messages += shapes.step(tool, rng, [])
            follow_up = corpus.prose(40, 600) + ("\n" + corpus.tests() if rng.random() < 0.2
                                                  else "")
            s.messages.append(shapes.user(tool, follow_up))
            at += timedelta(seconds=rng.uniform(5, 40) + rng.uniform(20, 300))
    return s


def month_of_sessions(org: Organisation, start: datetime, days: int,
                      rng: random.Random) -> list[Session]:
    """Sessions per developer, coding tool and day until the tool's daily calls are used."""
    shapes, sessions = Shapes(Corpus(rng)), []
    for day in range(days):
        morning = start + timedelta(days=day, hours=9)
        workday = morning.weekday() < 5
        for developer in org.developers:
            for tool in developer.tools:
                if tool.tool not in SURFACES or not (workday or rng.random() < 0.1):
                    continue
                budget = tool.calls_per_hour * developer.intensity * 8 * (1 if workday else 0.3)
                at = morning + timedelta(minutes=rng.uniform(0, 60))
                while budget >= 5 and at.hour < 19:
                    calls = round(math.exp(rng.uniform(math.log(5), math.log(80))))
                    sessions.append(session(shapes, rng, tool.tool, developer, at, calls))
                    budget -= calls
                    at = sessions[-1].times[-1] + timedelta(minutes=rng.uniform(5, 60))
    return sessions


def request_id(rng: random.Random, at: datetime) -> str:
    """A UUIDv7 of ``at``, as the gateway mints them: ordering by id is ordering by time."""
    ms = int(at.timestamp() * 1000)
    return str(uuid.UUID(int=(ms << 80) | (0x7 << 76) | (0b10 << 62) | rng.getrandbits(62)))


def calls_in_order(sessions: list[Session]) -> Iterator[tuple[datetime, Session, int]]:
    """Every call of every session, in time order (interleaved as the gateway sees them)."""
    def calls(s: Session) -> Iterator[tuple[datetime, Session, int]]:
        return ((at, s, index) for index, at in enumerate(s.times))

    return heapq.merge(*map(calls, sessions), key=lambda call: call[0])


@dataclass(slots=True)
class Tally:
    """What storing and scanning costs per call and per distinct message."""

    calls: Counter[str] = field(default_factory=Counter)
    body_bytes: int = 0
    message_bytes: int = 0
    messages_sent: int = 0
    distinct: dict[str, list[Any]] = field(default_factory=dict)
    distinct_bytes: int = 0
    #: Distinct messages and their bytes if the address ignored ``cache_control``.
    unmarked: dict[str, int] = field(default_factory=dict)
    #: Calls whose predecessor in time (its neighbour in a table ordered by request id)
    #: belongs to the same session: what lets a per-call table compress across rows.
    same_session_neighbours: int = 0


def measure(client: Any, sessions: list[Session], rng: random.Random) -> Tally:
    """Split every call as the gateway does, tally bytes, and insert both tables in batches."""
    tally, naive, size, previous = Tally(), [], 0, None
    expires = datetime.now(UTC) + timedelta(days=30)  # the month is past: keep the TTL away
    for at, s, index in calls_in_order(sessions):
        rid, payload = request_id(rng, at), s.payload(index)
        body = orjson.dumps(payload)
        tally.calls[s.tool] += 1
        tally.same_session_neighbours += s is previous
        previous = s
        tally.body_bytes += len(body)
        messages = request_messages(SURFACES[s.tool], payload)
        last_unmarked = (message_hash(s.messages[s.ends[index] - 1])
                         if s.tool == "claude-code" else None)
        for position, message in enumerate(messages):
            size_b = len(message.text.encode())
            tally.messages_sent += 1
            tally.message_bytes += size_b
            if message.message_hash not in tally.distinct:
                tally.distinct[message.message_hash] = [
                    message.message_hash, "full", s.developer.team, s.repo, message.role, rid,
                    at.astimezone(UTC), expires, len(message.text), 0, message.text]
                tally.distinct_bytes += size_b
            moving = last_unmarked is not None and position == len(messages) - 1
            tally.unmarked[last_unmarked if moving and last_unmarked else message.message_hash] = size_b
        naive.append([rid, at.astimezone(UTC), s.developer.team, body])
        size += len(body)
        if size >= BATCH_BYTES:
            client.insert(f"{DATABASE}.naive_request_bodies", naive, column_names=NAIVE_COLUMNS)
            naive, size = [], 0
    if naive:
        client.insert(f"{DATABASE}.naive_request_bodies", naive, column_names=NAIVE_COLUMNS)
    rows = list(tally.distinct.values())
    for first in range(0, len(rows), 20_000):
        client.insert(f"{DATABASE}.audit_bodies", rows[first:first + 20_000],
                      column_names=BODY_COLUMNS)
    return tally


def create_tables(client: Any, settings: ClickHouseSettings) -> str:
    """``audit_bodies`` by the real migrations; the per-call table beside it, same codec."""
    migrate(client, settings, DATABASE)
    codec = client.query(f"SELECT compression_codec FROM system.columns WHERE database = "
                         f"'{DATABASE}' AND table = 'audit_bodies' AND name = 'text'"
                         ).result_rows[0][0]
    client.command(f"CREATE TABLE {DATABASE}.naive_request_bodies (request_id String, "
                   f"received_at DateTime64(6, 'UTC'), team LowCardinality(String), "
                   f"body String {codec}) ENGINE = MergeTree ORDER BY request_id")
    for table in ("audit_bodies", "naive_request_bodies"):
        # Compact parts (small ones, by default) report no per-column sizes.
        client.command(f"ALTER TABLE {DATABASE}.{table} MODIFY SETTING min_bytes_for_wide_part = 0")
    return str(codec)


@dataclass(frozen=True, slots=True)
class Stored:
    rows: int
    parts: int
    on_disk: int
    column_compressed: int
    column_uncompressed: int


def stored(client: Any, table: str, column: str) -> Stored:
    """Bytes of ``table`` after merging it to one part, and of its text column."""
    client.command(f"OPTIMIZE TABLE {DATABASE}.{table} FINAL")
    rows, parts, on_disk = client.query(
        f"SELECT sum(rows), count(), sum(bytes_on_disk) FROM system.parts WHERE database = "
        f"'{DATABASE}' AND table = '{table}' AND active").result_rows[0]
    compressed, uncompressed = client.query(
        f"SELECT data_compressed_bytes, data_uncompressed_bytes FROM system.columns WHERE "
        f"database = '{DATABASE}' AND table = '{table}' AND name = '{column}'").result_rows[0]
    return Stored(int(rows), int(parts), int(on_disk), int(compressed), int(uncompressed))


def scan_seconds_per_mb(tally: Tally, rng: random.Random, sample_bytes: int) -> tuple[float, int]:
    """``SensitiveScanner(DEFAULT_KINDS).scan`` time per MB on a sample of distinct messages."""
    from meterline.policy import SensitiveScanner

    scanner = SensitiveScanner()
    texts, total = [], 0
    for key in rng.sample(sorted(tally.distinct), len(tally.distinct)):
        text = tally.distinct[key][-1]
        texts.append(text)
        total += len(text.encode())
        if total >= sample_bytes:
            break
    started = time.process_time()
    for text in texts:
        scanner.scan(text)
    return (time.process_time() - started) / (total / 1e6), total


def mb(count: int) -> str:
    return f"{count / 1e6:,.1f} MB"


def ratio(naive: float, addressed: float) -> str:
    return f"{naive / addressed:,.1f}x" if addressed else "n/a"


def report(org: Organisation, start: datetime, days: int, sessions: list[Session],
           tally: Tally, naive: Stored, bodies: Stored, codec: str,
           scan: tuple[float, int], elapsed: dict[str, float]) -> None:
    lengths = sorted(len(s.times) for s in sessions)
    largest = max(len(orjson.dumps(s.payload(len(s.times) - 1))) for s in sessions)
    unmarked_bytes = sum(tally.unmarked.values())
    rate, sample = scan
    print(f"Organisation.demo: {len(org.developers)} developers in {len(org.teams)} teams (plus "
          f"a contractor), {days} days from {start:%Y-%m-%d}: {len(sessions):,} sessions of "
          f"{lengths[0]} to {lengths[-1]} calls (median {lengths[len(lengths) // 2]}, mean "
          f"{sum(lengths) / len(lengths):.1f}), {sum(tally.calls.values()):,} calls ("
          + ", ".join(f"{tool} {n:,}" for tool, n in sorted(tally.calls.items())) +
          f"); largest request {mb(largest)}.\n")
    print("| stored | every call | each distinct message once | saved |")
    print("|---|---:|---:|---:|")
    print(f"| request bodies as sent (JSON, tool definitions included) vs distinct message text "
          f"| {mb(tally.body_bytes)} | {mb(tally.distinct_bytes)} | "
          f"{ratio(tally.body_bytes, tally.distinct_bytes)} |")
    print(f"| message text only | {mb(tally.message_bytes)} | {mb(tally.distinct_bytes)} | "
          f"{ratio(tally.message_bytes, tally.distinct_bytes)} |")
    print(f"| messages | {tally.messages_sent:,} | {len(tally.distinct):,} | "
          f"{ratio(tally.messages_sent, len(tally.distinct))} |")
    print(f"| ClickHouse, text column compressed ({codec}) | {mb(naive.column_compressed)} | "
          f"{mb(bodies.column_compressed)} | "
          f"{ratio(naive.column_compressed, bodies.column_compressed)} |")
    print(f"| ClickHouse, table on disk (one merged part) | {mb(naive.on_disk)} | "
          f"{mb(bodies.on_disk)} | {ratio(naive.on_disk, bodies.on_disk)} |")
    print(f"| scans: bytes through the scanner | {mb(tally.message_bytes)} | "
          f"{mb(tally.distinct_bytes)} | {ratio(tally.message_bytes, tally.distinct_bytes)} |")
    print(f"| scans: CPU at {rate:.2f} s/MB (DEFAULT_KINDS, {mb(sample)} sample) | "
          f"{rate * tally.message_bytes / 1e6:,.0f} s | {rate * tally.distinct_bytes / 1e6:,.0f} s"
          f" | {ratio(tally.message_bytes, tally.distinct_bytes)} |")
    within_naive = ratio(naive.column_uncompressed, naive.column_compressed)
    neighbours = tally.same_session_neighbours / sum(tally.calls.values())
    print(f"\nCompression within each table: per call {within_naive} ({naive.rows:,} rows; "
          f"{neighbours:.0%} of rows follow a call of the same session, whose repeated context "
          f"ZSTD finds within a block: fewer as more sessions run at once), "
          f"distinct messages "
          f"{ratio(bodies.column_uncompressed, bodies.column_compressed)} ({bodies.rows:,} rows)."
          f" Claude Code's moving cache_control marker: the last message is addressed once with "
          f"it and again without it on the next call; addressed without it, "
          f"{len(tally.unmarked):,} distinct messages, {mb(unmarked_bytes)} "
          f"({1 - unmarked_bytes / tally.distinct_bytes:.0%} less). Timings: "
          + ", ".join(f"{step} {seconds:.1f} s" for step, seconds in elapsed.items()) + ".")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one team, one week")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--teams", type=int, default=3)
    parser.add_argument("--days", type=int, default=31)
    args = parser.parse_args()
    teams, days = (1, 7) if args.quick else (args.teams, args.days)
    org = Organisation.demo(seed=args.seed, teams=teams)
    start = datetime(2026, 10, 1, tzinfo=ZoneInfo(org.timezone))
    rng = random.Random(args.seed)
    elapsed: dict[str, float] = {}

    def timed(step: str, run: Callable[[], Any]) -> Any:
        started = time.monotonic()
        result = run()
        elapsed[step] = time.monotonic() - started
        return result

    sessions = timed("simulate", lambda: month_of_sessions(org, start, days, rng))
    path = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    try:
        settings = ClickHouseSettings(dsn=f"chdb://{path}")
        client = connect(settings)
        codec = create_tables(client, settings)
        tally = timed("split and insert", lambda: measure(client, sessions, rng))
        naive = timed("merge per call", lambda: stored(client, "naive_request_bodies", "body"))
        bodies = timed("merge distinct", lambda: stored(client, "audit_bodies", "text"))
    finally:
        shutil.rmtree(path, ignore_errors=True)
    scan = timed("scan sample", lambda: scan_seconds_per_mb(tally, rng, 2_000_000))
    report(org, start, days, sessions, tally, naive, bodies, codec, scan, elapsed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
