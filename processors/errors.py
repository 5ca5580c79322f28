"""Processor errors.

    ProcessorError          base
    └── PoisonMessage       the message can never be processed: dead-letter it
                            with ``reason`` and commit past it

Anything else raised in an agent is a bug: the worker crashes without
committing, and the message is processed again after restart.
"""

from __future__ import annotations


class ProcessorError(Exception):
    """Base of errors raised by processors."""


class PoisonMessage(ProcessorError):
    """A message that fails validation; ``reason`` says why, for the dead-letter topic."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
