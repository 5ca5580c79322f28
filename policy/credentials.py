"""Credentials and keys in prompt text, found by detect-secrets' own plugins.

Why not ``detect_secrets.core.scan.scan_line``: it costs 0.5 to 0.9 ms per
line here (for every line it looks plugins and filters up through the
library's global settings and calls 27 plugins and ten filters through its
dependency injection), so a 50 kB prompt of 1,200 lines takes most of a
second; and it rewrites those global settings on every call, so threads race.
This module builds the selected plugin instances once and runs *their*
patterns and checks on a whole message:

1. Gate. Each kind lists hint literals, one of which every match of its
   patterns contains (``AKIA``… for AWS key ids, the keyword plugin's own
   ``DENYLIST`` words for assignments). A kind whose hints are absent costs a
   substring search; most messages skip most kinds.
2. Match. The plugin's compiled patterns (``denylist``, keyword table,
   quoted-string regex) run with ``finditer`` on the whole message, or, for
   plugins whose patterns are anchored to a line or may run past a newline,
   on each line holding a hint, as detect-secrets runs them line by line.
3. Confirm. Where a plugin overrides ``analyze_string`` (JWT structure check,
   keyword table, quoted strings) a value counts only if the plugin itself
   yields it for that line; high-entropy strings must also exceed the
   plugin's Shannon-entropy limit.
4. Filter. detect-secrets' default heuristic filters drop the value
   (sequential, UUID, ``*_id`` name, ``{templated}``, ``$VAR``, no letter);
   keyword matches also meet its indirect-reference filter (``x = get(…)``).
5. Span. Token kinds widen to the whole token (the Stripe pattern needs 24
   characters of a 107-character key), private keys to the whole PEM block
   (the plugin matches its ``BEGIN`` line), so redacting removes all of it.

detect-secrets is imported when a :class:`CredentialDetector` is built, not
with this module (0.15 s and 15 MB, most of it ``requests``).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

SpanRule = Literal["group", "token", "dotted", "pem"]
"""``group``: the value as matched; ``token``: widened to the run of letters,
digits, ``_`` and ``-`` around it; ``dotted``: the same plus ``.`` (JWTs);
``pem``: the whole ``-----BEGIN`` … ``-----END …-----`` block."""


@dataclass(frozen=True, slots=True)
class CredentialKind:
    """One kind of credential: which plugin and patterns, how to gate and span it."""

    kind: str
    plugin: str
    hints: tuple[str, ...]
    """Literals as the patterns spell them, one of which is in every match;
    empty for the keyword plugin, whose hints are its ``DENYLIST`` words."""
    patterns: tuple[int, ...] = ()
    """Indexes into the plugin's ``denylist``; empty means all of them."""
    also: tuple[str, ...] = ()
    """Per-line kinds only: a line must hold one of these too."""
    per_line: bool = False
    span: SpanRule = "token"
    keyword_table: Literal["quoted", "config"] = "quoted"

    @property
    def detector(self) -> str:
        return f"detect-secrets:{self.plugin}"


_GITLAB = ("glpat-", "gldt-", "glft-", "glsoat-", "glrt-", "GR1348941", "glcbt-", "glimt-", "glptt-",
           "glagent-", "gloas-")
_ASSIGNED = ("key", "pwd", "pass", "token")

CREDENTIAL_KINDS: tuple[CredentialKind, ...] = (
    CredentialKind("private_key", "PrivateKeyDetector", ("PRIVATE KEY", "PuTTY-User-Key-File-2"), span="pem"),
    CredentialKind("aws_access_key", "AWSKeyDetector", ("A3T", "ABIA", "ACCA", "AKIA", "ASIA"), (0,)),
    CredentialKind("aws_secret_key", "AWSKeyDetector", ("aws",), (1,), span="group"),
    CredentialKind("github_token", "GitHubTokenDetector", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
    CredentialKind("gitlab_token", "GitLabTokenDetector", _GITLAB),
    CredentialKind("slack_webhook", "SlackDetector", ("hooks.slack.com",), (1,)),
    CredentialKind("slack_token", "SlackDetector", ("xox",), (0,)),
    CredentialKind("stripe_key", "StripeDetector", ("k_live_",)),
    CredentialKind("openai_key", "OpenAIDetector", ("T3BlbkFJ",)),
    CredentialKind("sendgrid_key", "SendGridDetector", ("SG.",)),
    CredentialKind("npm_token", "NpmDetector", (":_authToken=",), per_line=True, span="group"),
    CredentialKind("pypi_token", "PypiTokenDetector", ("pypi-Ag",)),
    CredentialKind("twilio_key", "TwilioKeyDetector", ("AC", "SK")),
    CredentialKind("mailchimp_key", "MailchimpDetector", ("-us",)),
    CredentialKind("discord_token", "DiscordBotTokenDetector", (".",)),
    CredentialKind("telegram_token", "TelegramBotTokenDetector", (":",)),
    CredentialKind("azure_storage_key", "AzureStorageKeyDetector", ("AccountKey=",), span="group"),
    CredentialKind("square_oauth", "SquareOAuthDetector", ("sq0csp-",)),
    CredentialKind("artifactory_token", "ArtifactoryDetector",
                   ("AKC", *(f"AP{c}" for c in "0123456789ABCDEF")), per_line=True),
    CredentialKind("softlayer_key", "SoftlayerDetector",
                   ("softlayer", *(f"sl{c}" for c in ("_", "-", "api", "key", "pwd", "pass", "token"))),
                   per_line=True, span="group"),
    CredentialKind("cloudant_key", "CloudantDetector",
                   ("clou", *(f"cl{c}" for c in ("_", "-", "api", "key", "pw", "pass", "token"))),
                   per_line=True, span="group"),
    CredentialKind("ibm_cloud_iam_key", "IbmCloudIamDetector", _ASSIGNED, per_line=True, span="group"),
    CredentialKind("ibm_cos_hmac", "IbmCosHmacDetector", ("secret",), also=("key",), per_line=True,
                   span="group"),
    CredentialKind("jwt", "JwtTokenDetector", ("eyJ",), span="dotted"),
    CredentialKind("basic_auth_url", "BasicAuthDetector", ("://",), span="group"),
    CredentialKind("keyword_password", "KeywordDetector", (), per_line=True, span="group"),
    CredentialKind("keyword_password_unquoted", "KeywordDetector", (), per_line=True, span="group",
                   keyword_table="config"),
    CredentialKind("high_entropy_base64", "Base64HighEntropyString", ('"', "'"), span="group"),
    CredentialKind("high_entropy_hex", "HexHighEntropyString", ('"', "'"), span="group"),
)
"""Every credential kind (``sensitive.ALL_KINDS`` ranks them)."""

_TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "_-")
_DOTTED_CHARS = _TOKEN_CHARS | {"."}
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_PEM_SEARCH_CHARS = 20_000
"""How far past a ``BEGIN`` line to look for its ``END``: a 4096-bit RSA key
is about 3.3 kB, a PGP private key block a few kB more."""


@dataclass(frozen=True, slots=True)
class _Unit:
    """One kind, built: plugin instance, patterns with the groups that hold the value, checks."""

    spec: CredentialKind
    plugin: Any
    patterns: tuple[tuple[re.Pattern[str], tuple[int, ...]], ...]
    hints: tuple[str, ...]
    also: tuple[str, ...]
    fold_case: bool
    confirm: Callable[[str], set[str]] | None
    entropy_limit: float | None
    keyword: bool
    """Keyword tables take one match per pattern and line (``search``), as the plugin does."""


def _build_unit(spec: CredentialKind, plugins_by_name: dict[str, type[Any]]) -> _Unit:
    from detect_secrets.plugins import keyword
    from detect_secrets.plugins.base import RegexBasedDetector
    from detect_secrets.plugins.high_entropy_strings import HighEntropyStringsPlugin

    plugin = plugins_by_name[spec.plugin]()
    hints, entropy_limit = spec.hints, None
    confirm: Callable[[str], set[str]] | None = None
    patterns: tuple[tuple[re.Pattern[str], tuple[int, ...]], ...]
    if isinstance(plugin, keyword.KeywordDetector):
        table = (keyword.QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP if spec.keyword_table == "quoted"
                 else keyword.CONFIG_DENYLIST_REGEX_TO_GROUP)
        patterns = tuple((pattern, (group,)) for pattern, group in table.items())
        hints = tuple({word.replace("_?", sep) for word in keyword.DENYLIST for sep in ("_", "")})

        def confirm(line: str) -> set[str]:
            return set(plugin.analyze_string(line, denylist_regex_to_group=table))
    elif isinstance(plugin, HighEntropyStringsPlugin):
        patterns = ((plugin.regex, (2,)),)
        entropy_limit = plugin.entropy_limit
        confirm = _values_of(plugin)
    elif isinstance(plugin, RegexBasedDetector):
        denylist = list(plugin.denylist)
        chosen = [denylist[i] for i in spec.patterns] if spec.patterns else denylist
        patterns = tuple((p, _value_groups(p)) for p in chosen)
        if type(plugin).analyze_string is not RegexBasedDetector.analyze_string:
            confirm = _values_of(plugin)
    else:
        raise TypeError(f"{spec.plugin} is neither a regex, keyword nor entropy plugin")
    fold = any(pattern.flags & re.IGNORECASE for pattern, _ in patterns)
    return _Unit(spec=spec, plugin=plugin, patterns=patterns,
                 hints=tuple(h.lower() for h in hints) if fold else hints,
                 also=tuple(h.lower() for h in spec.also) if fold else spec.also, fold_case=fold,
                 confirm=confirm, entropy_limit=entropy_limit,
                 keyword=isinstance(plugin, keyword.KeywordDetector))


def _value_groups(pattern: re.Pattern[str]) -> tuple[int, ...]:
    """The groups ``RegexBasedDetector.analyze_string`` yields: every group, or the match."""
    return tuple(range(1, pattern.groups + 1)) if pattern.groups else (0,)


def _values_of(plugin: Any) -> Callable[[str], set[str]]:
    def values(line: str) -> set[str]:
        return set(plugin.analyze_string(line))
    return values


class CredentialDetector:
    """The selected credential kinds, built once; :meth:`find` is safe from many threads.

    Construction imports detect-secrets and instantiates one plugin per kind.
    After that nothing is written: the plugins' compiled patterns, the
    heuristic filters (pure functions, their regexes behind ``lru_cache``) and
    this object's tuples are only read (``lru_cache`` is thread-safe for the
    filters' first calls). The library's global settings are never changed
    and no plugin's ``verify`` (a call to the provider) runs.
    ``gate=False`` runs every pattern on every message (for tests and the bench).
    """

    def __init__(self, kinds: Sequence[str], *, gate: bool = True) -> None:
        from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
        from detect_secrets.filters import heuristic

        plugin_classes: list[type[Any]] = list(get_mapping_from_secret_type_to_class().values())
        plugins_by_name = {cls.__name__: cls for cls in plugin_classes}
        specs = {spec.kind: spec for spec in CREDENTIAL_KINDS}
        self._units = tuple(_build_unit(specs[kind], plugins_by_name) for kind in kinds)
        self._heuristic = heuristic
        self._gate = gate

    def find(self, text: str) -> list[tuple[str, int, int]]:
        """``(kind, start, end)`` for every credential in ``text``; unsorted, may overlap."""
        found: list[tuple[str, int, int]] = []
        folded: str | None = None
        for unit in self._units:
            haystack = text
            if unit.fold_case:
                folded = haystack = _fold(text) if folded is None else folded
            if self._gate and not any(hint in haystack for hint in unit.hints):
                continue
            if not unit.spec.per_line:
                found += self._match(unit, text, 0, text)
                continue
            for start in _hinted_lines(haystack, unit.hints) if self._gate else _line_starts(text):
                if self._gate and unit.also and not any(h in _line_at(haystack, start) for h in unit.also):
                    continue
                found += self._match(unit, _line_at(text, start), start, text)
        return found

    def _match(self, unit: _Unit, chunk: str, offset: int, text: str) -> list[tuple[str, int, int]]:
        """Matches of ``unit`` in ``chunk`` (at ``offset`` in ``text``), confirmed, filtered, spanned."""
        found: list[tuple[str, int, int]] = []
        confirmed: dict[int, set[str]] = {}
        for pattern, groups in unit.patterns:
            if unit.keyword:
                matches = [m] if (m := pattern.search(chunk)) else []
            else:
                matches = list(pattern.finditer(chunk))
            for match in matches:
                for group in groups:
                    value = match.group(group)
                    if not value:
                        continue
                    start, end = offset + match.start(group), offset + match.end(group)
                    line_start = text.rfind("\n", 0, start) + 1
                    line = _line_at(text, line_start)
                    if unit.confirm is not None:
                        if line_start not in confirmed:
                            confirmed[line_start] = unit.confirm(line)
                        if value not in confirmed[line_start]:
                            continue
                    if not self._filtered(unit, value, line):
                        found.append((unit.spec.kind, *_span(unit.spec.span, text, start, end)))
        return found

    def _filtered(self, unit: _Unit, value: str, line: str) -> bool:
        """detect-secrets' default heuristic filters, and the plugin's entropy limit."""
        h = self._heuristic
        if unit.entropy_limit is not None and not (
                unit.plugin.calculate_shannon_entropy(value) > unit.entropy_limit):
            return True
        return bool(
            h.is_sequential_string(value) or h.is_potential_uuid(value)
            or h.is_likely_id_string(value, line, unit.plugin) or h.is_templated_secret(value)
            or h.is_prefixed_with_dollar_sign(value) or h.is_not_alphanumeric_string(value)
            or (unit.keyword and h.is_indirect_reference(line)))


def _fold(text: str) -> str:
    """``text`` lower-cased, every offset kept (``"İ".lower()`` is two characters)."""
    folded = text.lower()
    return folded if len(folded) == len(text) else text.translate(_ASCII_LOWER)


def _line_at(text: str, line_start: int) -> str:
    """The line of ``text`` starting at ``line_start``, right-stripped as detect-secrets does."""
    line_end = text.find("\n", line_start)
    return text[line_start:len(text) if line_end < 0 else line_end].rstrip()


def _line_starts(text: str) -> list[int]:
    return [0, *(i + 1 for i, char in enumerate(text) if char == "\n")]


def _hinted_lines(haystack: str, hints: tuple[str, ...]) -> list[int]:
    """Start offsets of the lines of ``haystack`` holding a hint, ascending, once each."""
    starts: set[int] = set()
    for hint in hints:
        at = haystack.find(hint)
        while at >= 0:
            starts.add(haystack.rfind("\n", 0, at) + 1)
            next_line = haystack.find("\n", at)
            at = -1 if next_line < 0 else haystack.find(hint, next_line)
    return sorted(starts)


def _span(rule: SpanRule, text: str, start: int, end: int) -> tuple[int, int]:
    """The span to report for a value at ``[start, end)`` under ``rule``."""
    if rule == "group":
        return start, end
    if rule == "pem":
        return _pem_block(text, start, end)
    chars = _DOTTED_CHARS if rule == "dotted" else _TOKEN_CHARS
    while start < end and text[start] not in chars:
        start += 1
    while end > start and text[end - 1] not in chars:
        end -= 1
    while start > 0 and text[start - 1] in chars:
        start -= 1
    while end < len(text) and text[end] in chars:
        end += 1
    while rule == "dotted" and end > start and text[end - 1] == ".":
        end -= 1
    return start, end


def _pem_block(text: str, start: int, end: int) -> tuple[int, int]:
    """From ``-----BEGIN`` (or the PuTTY header) to the end of ``-----END …-----``
    (or of the ``Private-MAC:`` line); to the next blank line if the block is cut off."""
    if text[max(0, start - 5):start] == "-----":
        start -= 5
    window_end = min(len(text), end + _PEM_SEARCH_CHARS)
    if text.startswith("PuTTY", start):
        mac = text.find("Private-MAC:", end, window_end)
        if mac >= 0:
            line_end = text.find("\n", mac)
            return start, len(text) if line_end < 0 else line_end
    else:
        footer = text.find("-----END", end, window_end)
        dashes = text.find("-----", footer + 8, window_end) if footer >= 0 else -1
        if dashes >= 0:
            return start, dashes + 5
    blank = text.find("\n\n", end, window_end)
    return start, window_end if blank < 0 else blank
