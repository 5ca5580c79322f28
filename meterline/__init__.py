"""Meterline: audit and cost attribution for AI developer tooling.

The stages live in ``meterline.schemas``, ``meterline.ingest``,
``meterline.processors``, ``meterline.sinks`` and ``meterline.reports``;
``meterline.embedded`` starts the single-machine parts and ``meterline.cli``
wires everything together (nothing imports the CLI).
"""

__version__ = "0.1.0"
