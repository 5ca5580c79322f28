"""Governance: the key registry, key changes and who may make them, and the enforcement ledger.

- ``registry``: every key's latest state, as each reader holds it, and the topic follower.
- ``key_admin``: mint, rotate and revoke (key events), who may (``Actor``), the publisher.
- ``key_fields``: the parsers and status every front end (CLI, HTTP, dashboard) shares.
- ``ledger``, ``ledger_wire``: rate limits and blocking budgets, held in the store for every
  gateway, and the wire format gateways speak to it.

docs/governance.md says what each does and why.
"""
