"""The egress-policy report as markdown (people), JSON and CSV (tools).

All three are pure functions of a ``PolicyReport`` and deterministic: rules in
configuration order (then unconfigured ones by name), kinds by calls, top
lists by calls then name. Amounts: exact decimals with 12 places in JSON and
CSV (as stored; rounding per row would stop rows summing to totals), dollars
and cents in markdown. Nothing here reads the store, and the report holds no
message text to print.

- JSON: one object, ``window``, ``totals``, ``rules``, ``sensitive``,
  ``exceptions``, ``uncovered_excepted_calls`` (see docs/policy.md).
- CSV: one header row and one row per rule, kind and exception, told apart by
  the ``section`` column (``rule``, ``sensitive``, ``exception``); fields a
  section does not have are empty.
"""

from __future__ import annotations

import csv
import io
import json
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from .policy_report import TOP, ExceptionUse, PolicyReport, RuleFigures

Format = Literal["markdown", "json", "csv"]
CSV_COLUMNS = ("section", "rule", "mode", "kind", "category", "would_block_calls", "audit_calls",
               "refused_calls", "excepted_calls", "messages", "messages_excepted", "calls",
               "calls_excepted", "teams", "users", "repos", "audit_cost_usd", "refused_cost_usd",
               "excepted_cost_usd", "exception_index", "scope", "until", "reason", "status")


def _amount(value: Decimal) -> str:
    return f"{value:.12f}"


def _usd(value: Decimal) -> str:
    return f"${value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,}"


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def would_block(rule: RuleFigures) -> str:
    """One line: what enforcing ``rule`` blocks or would have blocked in the window."""
    blocked_usd = _usd(rule.cost_usd["audit"] + rule.cost_usd["refused"])
    who = (f"from {_plural(len(rule.repos), 'repo')}, {_plural(len(rule.users), 'user')}, "
           f"{_plural(len(rule.teams), 'team')}")
    excepted = (f"; {_plural(rule.calls['excepted'], 'call')} let through by exceptions"
                if rule.calls["excepted"] else "")
    if not rule.blocked:
        return f"{rule.rule} ({rule.mode}): no call broke it{excepted}."
    if rule.calls["refused"]:
        audit = (f", and {_plural(rule.calls['audit'], 'call')} broke it in audit mode "
                 f"({_usd(rule.cost_usd['audit'])})" if rule.calls["audit"] else "")
        return (f"{rule.rule} ({rule.mode}): refused {_plural(rule.calls['refused'], 'call')}"
                f"{audit} {who}{excepted}.")
    return (f"{rule.rule} ({rule.mode}): enforcing it would have blocked "
            f"{_plural(rule.blocked, 'call')} ({blocked_usd}) {who}{excepted}.")


def _top(rule: RuleFigures) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    repos = sorted(rule.repos.items(), key=lambda item: (-item[1], item[0]))[:TOP]
    models = sorted(rule.models.items(), key=lambda item: (-item[1], item[0]))[:TOP]
    return ([{"repo": repo, "calls": calls} for repo, calls in repos],
            [{"provider": p, "model": m, "calls": calls} for (p, m), calls in models])


def _scope(use: ExceptionUse) -> str:
    exception = use.exception
    parts = [f"{name} {', '.join(values)}" for name, values in (
        ("repos", exception.repos), ("teams", exception.teams), ("users", exception.users),
        ("kinds", exception.kinds)) if values]
    return "; ".join(parts) or "everyone"


def _status(use: ExceptionUse) -> str:
    return ("stale" if use.stale else "used") + (", expired" if use.expired else "")


def report_json(report: PolicyReport) -> dict[str, Any]:
    """The report as one JSON-ready object (amounts as exact decimal strings)."""
    window = report.window
    rules = []
    for rule in report.rules:
        top_repos, top_models = _top(rule)
        rules.append({
            "rule": rule.rule, "mode": rule.mode, "kinds": sorted(rule.kinds),
            "would_block_calls": rule.blocked, **{f"{s}_calls": rule.calls[s] for s in
                                                  ("audit", "refused", "excepted")},
            "teams": len(rule.teams), "users": len(rule.users), "repos": len(rule.repos),
            "cost_usd": {status: _amount(cost) for status, cost in rule.cost_usd.items()},
            "top_repos": top_repos, "top_models": top_models, "summary": would_block(rule)})
    return {
        "window": {"since": window.local(window.start).isoformat(),
                   "until": window.local(window.end).isoformat(),
                   "timezone": window.timezone, "team": window.team},
        "totals": {"calls": report.calls, "cost_usd": _amount(report.cost_usd),
                   "breaching_calls": report.breaching_calls},
        "rules": rules,
        "sensitive": [{"kind": s.kind, "category": s.category, "messages": s.messages,
                       "messages_excepted": s.messages_excepted, "calls": s.calls,
                       "calls_excepted": s.calls_excepted, "teams": s.teams, "repos": s.repos,
                       "users": s.users} for s in report.sensitive],
        "exceptions": [{"index": use.index, "rule": use.exception.rule,
                        "repos": use.exception.repos, "teams": use.exception.teams,
                        "users": use.exception.users, "kinds": use.exception.kinds,
                        "until": use.exception.until.isoformat() if use.exception.until else None,
                        "reason": use.exception.reason, "calls": use.calls,
                        "status": "stale" if use.stale else "used", "expired": use.expired}
                       for use in report.exceptions],
        "uncovered_excepted_calls": report.uncovered_excepted_calls,
    }


def render_csv(report: PolicyReport) -> str:
    """One row per rule, sensitive kind and exception (``section``), exact amounts."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, restval="", lineterminator="\n")
    writer.writeheader()
    for rule in report.rules:
        writer.writerow({"section": "rule", "rule": rule.rule, "mode": rule.mode,
                         "kind": " ".join(sorted(rule.kinds)), "would_block_calls": rule.blocked,
                         "audit_calls": rule.calls["audit"], "refused_calls": rule.calls["refused"],
                         "excepted_calls": rule.calls["excepted"], "teams": len(rule.teams),
                         "users": len(rule.users), "repos": len(rule.repos),
                         **{f"{s}_cost_usd": _amount(c) for s, c in rule.cost_usd.items()}})
    for s in report.sensitive:
        writer.writerow({"section": "sensitive", "kind": s.kind, "category": s.category,
                         "messages": s.messages, "messages_excepted": s.messages_excepted,
                         "calls": s.calls, "calls_excepted": s.calls_excepted, "teams": s.teams,
                         "users": s.users, "repos": s.repos})
    for use in report.exceptions:
        until = use.exception.until
        writer.writerow({"section": "exception", "rule": use.exception.rule, "calls": use.calls,
                         "exception_index": use.index, "scope": _scope(use),
                         "until": until.isoformat() if until else "",
                         "reason": use.exception.reason, "status": _status(use)})
    return out.getvalue()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: PolicyReport) -> str:
    """Tables for people: the would-block lines first, then rules, data, exceptions."""
    w = report.window
    lines = ["# Egress policy report", "",
             f"{w.local(w.start):%Y-%m-%d %H:%M} to {w.local(w.end):%Y-%m-%d %H:%M} "
             f"({w.timezone}), {'team ' + w.team if w.team else 'all teams'}: "
             f"{_plural(report.calls, 'call')}, {_usd(report.cost_usd)}; "
             f"{report.breaching_calls:,} broke a rule (exceptions aside).", "",
             "## What enforcement would block", ""]
    lines += [f"- {_cell(would_block(rule))}" for rule in report.rules] or ["- No rules."]
    lines += ["", "## Rules", "",
              "| rule | mode | kinds | would block | of which refused | excepted | teams | users "
              "| repos | spend would block | spend excepted | top repos | top providers/models |",
              "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|---|"]
    for rule in report.rules:
        top_repos, top_models = _top(rule)
        lines.append("| " + " | ".join(_cell(str(value)) for value in (
            rule.rule, rule.mode, ", ".join(sorted(rule.kinds)), f"{rule.blocked:,}",
            f"{rule.calls['refused']:,}", f"{rule.calls['excepted']:,}", len(rule.teams),
            len(rule.users), len(rule.repos),
            _usd(rule.cost_usd["audit"] + rule.cost_usd["refused"]),
            _usd(rule.cost_usd["excepted"]),
            ", ".join(f"{t['repo']} ({t['calls']:,})" for t in top_repos),
            ", ".join(f"{t['provider']}/{t['model']} ({t['calls']:,})" for t in top_models)))
            + " |")
    lines += ["", "## Sensitive data", "",
              "Distinct messages with findings (each counted once, however many calls resent "
              "it) and the calls that carried them. Kinds and places only: no message text is "
              "read.", ""]
    if report.sensitive:
        lines += ["| kind | category | messages | excepted | calls | only excepted | teams "
                  "| repos | users |", "|---|---|--:|--:|--:|--:|--:|--:|--:|"]
        lines += [f"| {s.kind} | {s.category} | {s.messages:,} | {s.messages_excepted:,} | "
                  f"{s.calls:,} | {s.calls_excepted:,} | {s.teams} | {s.repos} | {s.users} |"
                  for s in report.sensitive]
    else:
        lines.append("No findings in the window.")
    lines += ["", "## Exceptions", ""]
    if report.exceptions:
        lines += ["| # | rule | scope | until | reason | calls let through | status |",
                  "|--:|---|---|---|---|--:|---|"]
        lines += [f"| {u.index} | {_cell(u.exception.rule)} | {_cell(_scope(u))} | "
                  f"{u.exception.until or ''} | {_cell(u.exception.reason)} | {u.calls:,} | "
                  f"{_status(u)} |" for u in report.exceptions]
        stale = [u for u in report.exceptions if u.stale]
        lines += ["", f"Stale (matched nothing in the window): "
                  f"{', '.join(f'#{u.index} {u.exception.rule}' for u in stale) or 'none'}."]
    else:
        lines.append("No exceptions configured.")
    if report.uncovered_excepted_calls:
        lines += ["", f"{_plural(report.uncovered_excepted_calls, 'excepted call')} matched no "
                  f"exception in the configuration now (removed or narrowed since)."]
    return "\n".join(lines) + "\n"


def render(report: PolicyReport, fmt: Format) -> str:
    """The report in ``fmt``."""
    if fmt == "json":
        return json.dumps(report_json(report), indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        return render_csv(report)
    return render_markdown(report)
