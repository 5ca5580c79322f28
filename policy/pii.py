"""Personal data in prompt text, found by presidio-analyzer's pattern recognizers.

Only presidio's *pattern* recognizers run, each called directly as
``recognizer.analyze(text, entities, nlp_artifacts=None)``: no
``AnalyzerEngine``, no spaCy model, no context words (context scoring needs
the NLP pipeline). A result's score is therefore its pattern's score, or 1.0
when the recognizer's checksum validates it (Luhn for cards, ISO 13616 for
IBANs, base58check for wallets, a known public suffix for e-mail domains);
presidio drops the ones that fail. Each kind keeps scores at or above its
``min_score``, and a recognizer without a checksum is built with only the
patterns that can reach it (``UsSsnRecognizer``'s four "very weak" patterns
would cost four times the one kept and never pass).

Offline: presidio's ``EmailRecognizer`` checks domains with
``tldextract.extract``, whose module-level extractor downloads the Public
Suffix List on first use and logs an error when it cannot. Ours is a subclass
asking a ``tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)``: the
list snapshot inside tldextract, no network, no cache files.

Cost: presidio-analyzer's package ``__init__`` imports spaCy and NumPy even
though no model is loaded (about 1.2 s and 80 MB of RSS here), so the import
happens when a :class:`PiiDetector` is built, and only a scanner that asks for
a PII kind pays it.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class PiiKind:
    """One kind of personal data: the presidio recognizer and the lowest score kept."""

    kind: str
    recognizer: str
    min_score: float
    line_hints: tuple[str, ...] = ()
    """If set, the recognizer reads only the lines holding one of these: every
    match holds one and none crosses a line break (e-mail: ``@``)."""

    @property
    def detector(self) -> str:
        return f"presidio:{self.recognizer}"


PII_KINDS: tuple[PiiKind, ...] = (
    PiiKind("email", "EmailRecognizer", 0.5, line_hints=("@",)),
    PiiKind("credit_card", "CreditCardRecognizer", 0.5),
    PiiKind("iban", "IbanRecognizer", 0.5),
    PiiKind("us_ssn", "UsSsnRecognizer", 0.5),
    PiiKind("crypto_wallet", "CryptoRecognizer", 0.5),
    PiiKind("phone", "PhoneRecognizer", 0.4),
    PiiKind("ip_address", "IpRecognizer", 0.5),
)
"""Checksummed kinds keep validated results only. ``us_ssn`` at 0.5 keeps the
delimited ``ddd-dd-dddd`` pattern, not the undelimited "very weak" (0.05)
ones; ``ip_address`` at 0.5 drops the bare ``::`` pattern (0.1); ``phone``
has one score (0.4), python-phonenumbers' validity check being its filter."""

_WARM_UP_TEXT = "mail warm.up@example.com, call +1 650 253 0000 or +44 20 7946 0958."
"""Scanned once at construction so that every lazily built piece (compiled
patterns, the suffix trie, phone metadata) exists before any thread scans."""


def _recognizer(spec: PiiKind) -> Any:
    """presidio's recognizer for ``spec``, with only the patterns that can reach its minimum score."""
    import tldextract
    from presidio_analyzer import PatternRecognizer, predefined_recognizers

    cls = getattr(predefined_recognizers, spec.recognizer)
    if spec.recognizer == "EmailRecognizer":
        class OfflineEmailRecognizer(cls):  # type: ignore[misc,valid-type]
            """presidio's e-mail patterns and flow; the domain check reads the bundled suffix list."""

            def __init__(self) -> None:
                super().__init__(name="EmailRecognizer")
                self._extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

            def validate_result(self, pattern_text: str) -> bool:
                return self._extract(pattern_text).fqdn != ""

        return OfflineEmailRecognizer()
    if issubclass(cls, PatternRecognizer) and cls.validate_result is PatternRecognizer.validate_result:
        return cls(patterns=[pattern for pattern in cls.PATTERNS if pattern.score >= spec.min_score])
    return cls()


class PiiDetector:
    """The selected PII kinds, built once; :meth:`find` is safe from many threads.

    Construction imports presidio-analyzer, builds one recognizer per kind and
    scans a warm-up text, so that presidio's lazily compiled patterns, the
    tldextract suffix trie and python-phonenumbers' region metadata are in
    place. After that ``find`` only reads them.
    """

    def __init__(self, kinds: Sequence[str], *, gate: bool = True) -> None:
        """``gate=False`` hands every recognizer the whole text (for tests and the bench)."""
        specs = {spec.kind: spec for spec in PII_KINDS}
        self._recognizers = tuple((specs[kind], _recognizer(specs[kind])) for kind in kinds)
        self._gate = gate
        self.find(_WARM_UP_TEXT)

    def find(self, text: str) -> list[tuple[str, int, int]]:
        """``(kind, start, end)`` for every PII match in ``text``; unsorted, may overlap."""
        found: list[tuple[str, int, int]] = []
        for spec, recognizer in self._recognizers:
            part, starts, origins = text, [0], [0]
            if spec.line_hints and self._gate:
                if not any(hint in text for hint in spec.line_hints):
                    continue
                part, starts, origins = _lines_holding(text, spec.line_hints)
            for result in recognizer.analyze(part, recognizer.supported_entities, None):
                if result.score >= spec.min_score:
                    line = bisect.bisect_right(starts, result.start) - 1
                    shift = origins[line] - starts[line]
                    found.append((spec.kind, result.start + shift, result.end + shift))
        return found


def _lines_holding(text: str, hints: tuple[str, ...]) -> tuple[str, list[int], list[int]]:
    """The lines of ``text`` holding a hint, joined by newlines; where each starts in that
    string and where it started in ``text``."""
    origins = sorted({text.rfind("\n", 0, at) + 1 for hint in hints for at in _find_all(text, hint)})
    lines, starts, length = [], [], 0
    for origin in origins:
        end = text.find("\n", origin)
        line = text[origin:len(text) if end < 0 else end]
        lines.append(line)
        starts.append(length)
        length += len(line) + 1
    return "\n".join(lines), starts, origins


def _find_all(text: str, hint: str) -> list[int]:
    found, at = [], text.find(hint)
    while at >= 0:
        found.append(at)
        at = text.find(hint, at + 1)
    return found
