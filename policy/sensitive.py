"""Sensitive data in text bound for an LLM provider: what was found where, never the value.

A :class:`SensitiveScanner` is built once per process from the kinds to run
and then scans any number of messages, from any number of threads. Credentials
and keys are found by detect-secrets' plugins (:mod:`.credentials`), personal
data by presidio-analyzer's pattern recognizers (:mod:`.pii`); no regex here or
there is ours. A finding carries the kind, the detector and character offsets:
never the matched value, nor a hash of it (a hash of a short password or a card
number can be reversed by brute force).

Costs, measured by ``bench/policy_bench.py`` (figures in ``docs/policy.md``):
importing this module loads neither library; building a scanner loads
detect-secrets (15 MB) for credential kinds, and presidio-analyzer (with
spaCy, 80 MB more) only when a PII kind is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from .credentials import CREDENTIAL_KINDS, CredentialDetector
from .pii import PII_KINDS, PiiDetector

SensitiveCategory = Literal["secret", "pii"]

ALL_KINDS: tuple[str, ...] = (
    "private_key", "aws_access_key", "aws_secret_key", "github_token", "gitlab_token", "slack_webhook",
    "slack_token", "stripe_key", "openai_key", "sendgrid_key", "npm_token", "pypi_token", "twilio_key",
    "mailchimp_key", "discord_token", "telegram_token", "azure_storage_key", "square_oauth",
    "artifactory_token", "softlayer_key", "cloudant_key", "ibm_cloud_iam_key", "ibm_cos_hmac", "jwt",
    "basic_auth_url", "credit_card", "iban", "us_ssn", "crypto_wallet", "email", "phone", "ip_address",
    "keyword_password", "keyword_password_unquoted", "high_entropy_base64", "high_entropy_hex",
)
"""Every kind, most specific first: when findings overlap, the earliest kind in
this order names the merged finding (a GitHub token assigned to ``password =``
is a ``github_token``, not a ``keyword_password``)."""

DEFAULT_KINDS: tuple[str, ...] = tuple(kind for kind in ALL_KINDS if kind not in {
    "phone", "ip_address", "keyword_password_unquoted", "high_entropy_base64", "high_entropy_hex"})
"""The kinds a scanner runs unless told otherwise: by the bench's rule (table in
``docs/policy.md``), every kind with at most one false finding on the corpus
traps and at most 5 ms per 50 kB. Left out: ``phone`` (epoch timestamps and
IPs in logs read as numbers; python-phonenumbers costs 1.5 ms per kB),
``ip_address`` (every address in every log line), ``keyword_password_unquoted``
(type annotations, comparisons, env references, placeholders: ten false
findings), the two high-entropy kinds (quoted digests, lockfile integrity
hashes, base64 fixtures)."""

_CATEGORY: dict[str, SensitiveCategory] = {
    **{spec.kind: "secret" for spec in CREDENTIAL_KINDS}, **{spec.kind: "pii" for spec in PII_KINDS}}
_DETECTOR: dict[str, str] = {
    **{spec.kind: spec.detector for spec in CREDENTIAL_KINDS},
    **{spec.kind: spec.detector for spec in PII_KINDS},
}
_RANK = {kind: rank for rank, kind in enumerate(ALL_KINDS)}
if set(_RANK) != set(_CATEGORY):
    raise ImportError(f"ALL_KINDS and the detector tables disagree: {sorted(set(_RANK) ^ set(_CATEGORY))}")

DEFAULT_SECRET_KINDS: tuple[str, ...] = tuple(k for k in DEFAULT_KINDS if _CATEGORY[k] == "secret")
"""The credential kinds of :data:`DEFAULT_KINDS`: a scanner built with these
loads detect-secrets only (about 15 MB), not presidio and spaCy (about 80 MB
more), for a process with a tight memory budget such as the gateway."""
DEFAULT_PII_KINDS: tuple[str, ...] = tuple(k for k in DEFAULT_KINDS if _CATEGORY[k] == "pii")
"""The personal-data kinds of :data:`DEFAULT_KINDS` (the ones that load presidio)."""


@dataclass(frozen=True, slots=True)
class SensitiveFinding:
    """One sensitive value in a scanned text: ``text[start:end]`` (end exclusive).

    ``kind`` is a stable snake-case name from :data:`ALL_KINDS`; ``detector``
    names the library and its plugin or recognizer. The value itself is never
    stored, so a finding can be logged, stored or sent as is.
    """

    kind: str
    category: SensitiveCategory
    detector: str
    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end:
            raise ValueError(f"a finding spans at least one character, not [{self.start}, {self.end})")


class _Detector(Protocol):
    def find(self, text: str) -> list[tuple[str, int, int]]: ...


class SensitiveScanner:
    """Scans texts for the kinds it was built with; built once per process.

    Construction validates the kinds, imports the libraries they need and
    builds their detectors: 0.2 s, or 1.5 s with a PII kind (presidio and
    spaCy load), so build it at start-up, not per request.

    :meth:`scan` is CPU-bound and blocks for its duration: a few hundred
    microseconds per kB of ordinary text, up to about a second for a crafted
    50 kB line on which detect-secrets' own patterns backtrack (figures in
    ``docs/policy.md``). It does no I/O (no network, no file) and logs nothing
    above DEBUG, never a value. After construction no shared state is
    written, so one scanner may serve a thread pool; the GIL (held by ``re``
    for a whole match) keeps that from scaling with cores.
    """

    def __init__(self, kinds: Sequence[str] | None = None) -> None:
        """Raises ``ValueError`` naming the valid kinds if any kind is unknown."""
        if isinstance(kinds, str):
            raise ValueError(f"kinds is a sequence of kind names, not the string {kinds!r}")
        requested = DEFAULT_KINDS if kinds is None else tuple(kinds)
        unknown = sorted(set(requested) - set(ALL_KINDS))
        if unknown:
            raise ValueError(f"unknown sensitive-data kind(s) {', '.join(unknown)}; "
                             f"valid kinds: {', '.join(ALL_KINDS)}")
        self._kinds = tuple(kind for kind in ALL_KINDS if kind in set(requested))
        credentials = [kind for kind in self._kinds if _CATEGORY[kind] == "secret"]
        pii = [kind for kind in self._kinds if _CATEGORY[kind] == "pii"]
        detectors: list[_Detector] = []
        if credentials:
            detectors.append(CredentialDetector(credentials))
        if pii:
            detectors.append(PiiDetector(pii))
        self._detectors = tuple(detectors)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds this scanner runs, in :data:`ALL_KINDS` order."""
        return self._kinds

    def scan(self, text: str) -> list[SensitiveFinding]:
        """Every sensitive value in ``text``, sorted by start, none overlapping.

        Findings that overlap are merged into one spanning them all, named by
        the most specific kind among them (:data:`ALL_KINDS` order), so that
        :func:`redact` removes everything any detector saw.
        """
        raw = [hit for detector in self._detectors for hit in detector.find(text)]
        raw.sort(key=lambda hit: (hit[1], -hit[2]))
        merged: list[tuple[str, int, int]] = []
        for kind, start, end in raw:
            if merged and start < merged[-1][2]:
                best, first, last = merged[-1]
                merged[-1] = (kind if _RANK[kind] < _RANK[best] else best, first, max(last, end))
            else:
                merged.append((kind, start, end))
        return [SensitiveFinding(kind, _CATEGORY[kind], _DETECTOR[kind], start, end)
                for kind, start, end in merged]


def redact(text: str, findings: Sequence[SensitiveFinding]) -> str:
    """``text`` with each finding's span replaced by ``[REDACTED:<kind>]``; the rest byte-identical.

    ``findings`` must come from scanning this very ``text`` (a span past its
    end raises ``ValueError``). They may be in any order; overlapping ones
    (not produced by :meth:`SensitiveScanner.scan`) are redacted as one span
    named by the first.
    """
    parts: list[str] = []
    cursor = 0
    for finding in sorted(findings, key=lambda f: (f.start, -f.end)):
        if finding.end > len(text):
            raise ValueError(f"finding [{finding.start}, {finding.end}) lies outside a text of "
                             f"{len(text)} characters")
        if finding.end <= cursor:
            continue
        if finding.start >= cursor:
            parts.append(text[cursor:finding.start])
            parts.append(f"[REDACTED:{finding.kind}]")
        cursor = finding.end
    parts.append(text[cursor:])
    return "".join(parts)
