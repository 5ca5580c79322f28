"""Where detector state lives: a string-keyed mapping of small JSON values.

The stream agent passes a faust ``Table`` (changelog-backed, co-partitioned
with the team or provider stream); tests pass a ``dict``. Detectors follow
two rules so that both behave the same:

- a value read is copied or rebuilt, changed, then assigned back whole
  (``state[key] = value``): a faust table sends a key to its changelog only
  on assignment, so an in-place change alone would be lost on recovery;
- every value is small and bounded (see each detector's key layout), because
  each assignment is one changelog message.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any
from zoneinfo import ZoneInfo

from meterline.schemas import AnomalyThresholds

State = MutableMapping[str, Any]
ThresholdsFor = Callable[[str], AnomalyThresholds]
ZoneFor = Callable[[str], ZoneInfo]
