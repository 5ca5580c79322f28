"""The finance CSV: one row per team x cost centre x provider x model x user x repo x tool.

Made for import into a ledger, so it is plain and exact:

- UTF-8 with a byte-order mark (spreadsheet software then reads non-ASCII
  names such as ``Zürich-Daten`` correctly), comma-separated, CRLF, RFC 4180
  quoting, one header row;
- amounts are exact decimals with 12 places, as stored, never floats and
  never rounded to cents (rounding per row would stop the rows summing to
  the total);
- ``record_type`` is ``charge`` for booking rows; a configured team without
  spend gets one zero ``charge`` row so every cost centre is present; the
  last row, ``total``, repeats the reconciled grand total and request count;
- ``pricing`` is ``unpriced`` for calls no price source knows: their cost
  field is empty (unknown, not free) and their tokens are listed;
- unattributed spend has team ``(unattributed)`` and the suspense cost centre,
  with the team the key claimed in ``reported_team``.

Rows are sorted, so the same month always yields the same bytes.
"""

from __future__ import annotations

import csv
import io
from decimal import Decimal

from .chargeback_model import Chargeback, TeamChargeback
from .chargeback_query import Line

UNATTRIBUTED_TEAM = "(unattributed)"
COLUMNS = ("record_type", "month", "cost_centre", "team", "reported_team", "provider", "model",
           "user", "repo", "tool", "pricing", "requests", "errors", "input_tokens",
           "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens",
           "cost_usd")


def _amount(value: Decimal) -> str:
    return f"{value:.12f}"


def _row(month: str, team: TeamChargeback, line: Line) -> list[str]:
    blank_cost = line.unpriced and line.cost_usd == 0
    return ["charge", month, line.cost_centre if team.attributed else team.cost_centre,
            team.name if team.attributed else UNATTRIBUTED_TEAM, line.team, line.provider,
            line.model, line.user, line.repo, line.tool,
            "unpriced" if line.unpriced else "priced", str(line.requests), str(line.errors),
            str(line.input_tokens), str(line.output_tokens), str(line.cache_read_tokens),
            str(line.cache_write_tokens), str(line.reasoning_tokens),
            "" if blank_cost else _amount(line.cost_usd)]


def render_csv(chargeback: Chargeback) -> bytes:
    """The CSV file's bytes."""
    month = str(chargeback.month)
    rows: list[list[str]] = []
    for team in chargeback.all_teams:
        if not team.lines and team.attributed:
            rows.append(["charge", month, team.cost_centre, team.name, team.name, "", "", "", "",
                         "", "priced", "0", "0", "0", "0", "0", "0", "0", _amount(Decimal(0))])
        rows.extend(_row(month, team, line) for line in team.lines)
    rows.sort(key=lambda row: row[2:11])
    tokens = [sum(getattr(line, name) for line in chargeback.lines) for name in
              ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
               "reasoning_tokens")]
    total = ["total", month, "", "", "", "", "", "", "", "", "", str(chargeback.requests),
             str(sum(line.errors for line in chargeback.lines)), *map(str, tokens),
             _amount(chargeback.cost_usd)]
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    writer.writerow(total)
    return buffer.getvalue().encode("utf-8-sig")
