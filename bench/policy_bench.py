"""Sensitive-data detection benchmark: precision and recall per kind on the labelled corpus, and cost.

Accuracy. Every kind in ``ALL_KINDS`` runs alone (a scanner built with that
kind only) over ``tests/policy/corpus/``: positives (labelled values in agent
messages) and negatives (traps, the look-alikes scanners are known to flag,
and plain traffic). A label is found (TP) when a finding of its kind overlaps
it (``keyword_password_unquoted`` is scored on ``keyword_password`` labels);
a finding is false (FP) when it overlaps no label of any kind; each kind's
cost is its median time alone on three 50 kB messages. Then the
scanners for ``DEFAULT_KINDS`` and ``ALL_KINDS`` run with their merging, a
label counting as caught when any finding overlaps it, and every miss and
false finding of the defaults is listed.

Cost. Messages of 200 B (a chat turn from the corpus), 4 kB and 50 kB (this
repository's Python source with a corpus sample spliced in every ~2 kB);
p50 and p99 of ``scan`` per message, and three single 50 kB lines on which
detect-secrets' own patterns backtrack. For comparison the same 50 kB messages
go through detect-secrets' ``scan_line`` (its ad-hoc API, every plugin, one
call per line) and through our credential detector with its hint gate off.
Import and construction run in fresh interpreters: seconds and VmRSS.

Run: ``python3 bench/policy_bench.py [--quick]`` (about 30 s; ``--quick`` times fewer messages).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import string
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from meterline.policy.credentials import CredentialDetector  # noqa: E402
from meterline.policy.sensitive import (  # noqa: E402
    ALL_KINDS,
    DEFAULT_KINDS,
    DEFAULT_SECRET_KINDS,
    SensitiveFinding,
    SensitiveScanner,
)

CORPUS = REPO_ROOT / "tests" / "policy" / "corpus"
SCORED_AS = {"keyword_password_unquoted": "keyword_password"}
Sample = dict[str, Any]


def load_corpus() -> list[Sample]:
    return [json.loads(line) for name in ("positives.jsonl", "negatives.jsonl")
            for line in (CORPUS / name).read_text().splitlines()]


def overlaps(finding: SensitiveFinding, label: dict[str, Any]) -> bool:
    return bool(finding.start < label["end"] and label["start"] < finding.end)


def score(kinds: Sequence[str], corpus: list[Sample], target: str | None) -> tuple[dict[str, int], list[str]]:
    """Counts for a scanner of ``kinds`` over ``corpus``: labels of ``target`` (all if None) found,
    findings, false findings and those on traps; and a note per miss and per false finding."""
    scanner = SensitiveScanner(kinds)
    n = {"labels": 0, "tp": 0, "findings": 0, "fp": 0, "trap_fp": 0}
    notes: list[str] = []
    for sample in corpus:
        hits = scanner.scan(sample["text"])
        for label in sample["labels"]:
            if target is None or label["kind"] == target:
                n["labels"] += 1
                if any(overlaps(h, label) for h in hits):
                    n["tp"] += 1
                else:
                    notes.append(f"missed {label['kind']} in {sample['id']}")
        n["findings"] += len(hits)
        for h in hits:
            if not any(overlaps(h, label) for label in sample["labels"]):
                n["fp"] += 1
                n["trap_fp"] += 1 if sample["trap"] else 0
                notes.append(f"false {h.kind} in {sample['id']}: {sample['note']}")
    return n, sorted(notes)


def pct(a: int, b: int) -> str:
    return f"{a / b:.0%}" if b else "n/a"


def row(name: str, flag: str, n: dict[str, int], cost: str) -> str:
    return (f"| {name} | {flag} | {n['labels']} | {n['tp']} | {n['labels'] - n['tp']} | {n['findings']} "
            f"| {n['fp']} | {n['trap_fp']} | {pct(n['findings'] - n['fp'], n['findings'])} "
            f"| {pct(n['tp'], n['labels'])} | {cost} |")


MAX_TRAP_FP = 1
MAX_MS_PER_50KB = 5.0
"""The rule behind ``DEFAULT_KINDS``: at most this many false findings on the traps, at most this cost."""


def print_accuracy(corpus: list[Sample], large: list[str]) -> None:
    positives = sum(1 for s in corpus if s["labels"])
    print(f"Corpus: {positives} positive samples with {sum(len(s['labels']) for s in corpus)} labels; "
          f"{len(corpus) - positives} negative samples, {sum(s['trap'] for s in corpus)} of them traps.\n")
    header = "| {} | default | labels | TP | FN | findings | FP | FP on traps | precision | recall | {} |"
    print(header.format("kind", "ms per 50 kB") + "\n|---|:-:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    chosen = []
    for kind in ALL_KINDS:
        n, _ = score([kind], corpus, SCORED_AS.get(kind, kind))
        ms = statistics.median(timed_us(SensitiveScanner([kind]).scan, large)) / 1000
        print(row(kind, "yes" if kind in DEFAULT_KINDS else "", n, f"{ms:,.1f}"))
        if n["trap_fp"] <= MAX_TRAP_FP and ms <= MAX_MS_PER_50KB:
            chosen.append(kind)
    orphans = sorted({label["kind"] for s in corpus for label in s["labels"]} - set(ALL_KINDS))
    print(f"\nLabel kinds that no detector has: {', '.join(orphans) or 'none'}.\n")
    print(f"Rule: a kind is a default when it makes at most {MAX_TRAP_FP} false finding on the "
          f"{sum(s['trap'] for s in corpus)} traps and costs at most {MAX_MS_PER_50KB:g} ms per 50 kB alone. "
          + ("It selects exactly DEFAULT_KINDS." if tuple(chosen) == DEFAULT_KINDS else
             f"It selects {', '.join(chosen)}, which differs from DEFAULT_KINDS: update one or the other.")
          + f" Left out: {', '.join(k for k in ALL_KINDS if k not in DEFAULT_KINDS)}.\n")
    print(header.format("scanner", "").replace("| default ", "| kinds ").replace(" |  |", " |")
          + "\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    notes: list[str] = []
    for name, kinds in (("DEFAULT_KINDS", DEFAULT_KINDS), ("ALL_KINDS", ALL_KINDS)):
        n, found_notes = score(kinds, corpus, None)
        notes = notes or found_notes
        print(row(name, str(len(kinds)), n, "").removesuffix(" |  |") + " |")
    print("\nDEFAULT_KINDS, every miss and every false finding:\n")
    print("\n".join(f"- {note}" for note in notes))


def messages(size: int, count: int, corpus: list[Sample], rng: random.Random) -> list[str]:
    """``count`` messages of ``size`` characters (see the module docstring)."""
    if size <= 1000:
        texts = [s["text"] for s in corpus if len(s["text"]) >= size]
        return [rng.choice(texts)[:size] for _ in range(count)]
    source = "\n".join(path.read_text() for folder in ("ingest", "processors", "sinks", "schemas")
                       for path in sorted((REPO_ROOT / folder).rglob("*.py"))).splitlines()
    out = []
    for _ in range(count):
        lines: list[str] = []
        at, length, next_sample = rng.randrange(len(source)), 0, 0
        while length < size:
            if length >= next_sample:
                lines += rng.choice(corpus)["text"].splitlines()
                next_sample += 2000
            lines += source[at:at + 10]
            at = (at + 10) % len(source)
            length = sum(map(len, lines)) + len(lines)
        out.append("\n".join(lines)[:size])
    return out


def timed_us(scan: Callable[[str], object], texts: list[str]) -> list[float]:
    times = []
    for text in texts:
        started = time.perf_counter()
        scan(text)
        times.append((time.perf_counter() - started) * 1e6)
    return sorted(times)


def print_cost(corpus: list[Sample], quick: bool) -> None:
    rng = random.Random(11)
    sizes = (("small", 200, 100 if quick else 1000), ("typical", 4_000, 30 if quick else 200),
             ("large", 50_000, 8 if quick else 40))
    texts = {name: messages(size, count, corpus, rng) for name, size, count in sizes}
    print("| scanner | message | p50 µs | p99 µs | µs per kB at p50 |\n|---|---|---:|---:|---:|")
    for set_name, kinds in (("DEFAULT_KINDS", DEFAULT_KINDS), ("DEFAULT_SECRET_KINDS", DEFAULT_SECRET_KINDS),
                            ("ALL_KINDS", ALL_KINDS)):
        scanner = SensitiveScanner(kinds)
        for name, size, _ in sizes:
            batch = texts[name][:8] if set_name == "ALL_KINDS" and name == "large" else texts[name]
            times = timed_us(scanner.scan, batch)
            p50, p99 = times[len(times) // 2], times[min(len(times) - 1, int(0.99 * len(times)))]
            print(f"| {set_name} | {name}, {size / 1000:g} kB | {p50:,.0f} | {p99:,.0f} "
                  f"| {p50 / (size / 1000):,.0f} |")
    print()
    compare(texts["large"][:3])
    worst_cases(rng)


def worst_cases(rng: random.Random) -> None:
    """Single 50 kB lines on which detect-secrets' own patterns backtrack (see docs/policy.md)."""
    words = ["var a=1;", "password:b,", "api_key=c(d);", "x.secret=e;", 'f("g")+', "h=>i;"]
    cases = (("minified JavaScript, one line with key words",
              "".join(rng.choice(words) for _ in range(7000))),
             ("random letters, one line", "".join(rng.choice(string.ascii_letters) for _ in range(50_000))),
             ("'eyJ' repeated, no dot", "eyJ" * 16_667))
    scanner = SensitiveScanner(DEFAULT_KINDS)
    print("| worst case, 50 kB, DEFAULT_KINDS | ms |\n|---|---:|")
    for name, text in cases:
        print(f"| {name} | {timed_us(scanner.scan, [text[:50_000]])[0] / 1000:,.0f} |")
    print()


def compare(texts: list[str]) -> None:
    """The same 50 kB messages through ``scan_line`` (every plugin, default filters) and ungated."""
    from detect_secrets.core.scan import scan_line
    from detect_secrets.settings import default_settings

    lines = [line for text in texts for line in text.splitlines()]
    with default_settings():
        started = time.perf_counter()
        for line in lines:
            list(scan_line(line))
        per_line_us = (time.perf_counter() - started) / len(lines) * 1e6
    gated = statistics.median(timed_us(CredentialDetector(DEFAULT_SECRET_KINDS).find, texts))
    ungated = statistics.median(timed_us(CredentialDetector(DEFAULT_SECRET_KINDS, gate=False).find, texts))
    print(f"On the same 50 kB messages ({len(lines) // len(texts)} lines each): detect-secrets `scan_line` "
          f"with every plugin and its default filters costs {per_line_us:,.0f} µs per line, "
          f"{per_line_us * len(lines) / len(texts) / 1000:,.0f} ms per message; our credential detector "
          f"for DEFAULT_SECRET_KINDS costs {gated / 1000:,.1f} ms with the hint gate and "
          f"{ungated / 1000:,.1f} ms without.\n")


FOOTPRINT = """
import json, time
def rss():
    return next(int(l.split()[1]) / 1024 for l in open('/proc/self/status') if l.startswith('VmRSS'))
before = rss(); started = time.perf_counter()
from meterline.policy.sensitive import SensitiveScanner, DEFAULT_KINDS, DEFAULT_SECRET_KINDS, ALL_KINDS
imported, after_import = time.perf_counter(), rss()
SensitiveScanner({kinds})
print(json.dumps([before, imported - started, after_import - before, time.perf_counter() - imported,
                  rss() - after_import, rss()]))
"""


def print_footprint() -> None:
    print("| scanner | interpreter RSS MB | import s | import RSS MB | construction s | construction RSS MB "
          "| process RSS MB |\n|---|---:|---:|---:|---:|---:|---:|")
    for kinds in ("DEFAULT_SECRET_KINDS", "DEFAULT_KINDS", "ALL_KINDS"):
        out = subprocess.run([sys.executable, "-c", FOOTPRINT.format(kinds=kinds)], cwd=REPO_ROOT,
                             capture_output=True, text=True, check=True).stdout
        base, imp_s, imp_mb, build_s, build_mb, total = json.loads(out)
        print(f"| {kinds} | {base:.0f} | {imp_s:.3f} | {imp_mb:.1f} | {build_s:.2f} | {build_mb:.0f} "
              f"| {total:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="time fewer messages per size")
    args = parser.parse_args()
    corpus = load_corpus()
    print("### Accuracy per kind, each kind alone\n")
    print_accuracy(corpus, messages(50_000, 3, corpus, random.Random(5)))
    print(f"\nDEFAULT_KINDS ({len(DEFAULT_KINDS)}): {', '.join(DEFAULT_KINDS)}.\n")
    print("### Inline cost of `SensitiveScanner.scan`\n")
    print_cost(corpus, args.quick)
    print("### Import and construction, each in a fresh interpreter\n")
    print_footprint()


if __name__ == "__main__":
    main()
