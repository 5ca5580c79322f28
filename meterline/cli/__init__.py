"""The ``meterline`` command. Wires the stages together; nothing imports it."""
