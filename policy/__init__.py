"""Egress policy: what may leave, to which provider, and what must not leave at all.

Public: :class:`SensitiveScanner` and :func:`redact` with their kinds
(``meterline.policy.sensitive``). Importing this package loads neither
detect-secrets nor presidio-analyzer; building a scanner does.
"""

from .sensitive import (
    ALL_KINDS,
    DEFAULT_KINDS,
    DEFAULT_PII_KINDS,
    DEFAULT_SECRET_KINDS,
    SensitiveCategory,
    SensitiveFinding,
    SensitiveScanner,
    redact,
)

__all__ = [
    "ALL_KINDS",
    "DEFAULT_KINDS",
    "DEFAULT_PII_KINDS",
    "DEFAULT_SECRET_KINDS",
    "SensitiveCategory",
    "SensitiveFinding",
    "SensitiveScanner",
    "redact",
]
