"""JSON Schema export of the contract, kept in the repository under ``schemas/json/``.

``python -m meterline.schemas.json_schema`` rewrites the files; a test fails
when they differ from the models, so the published contract never drifts from
the code that produces and consumes it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from .anomaly import Anomaly
from .envelope import Envelope
from .event import Event

MODELS: dict[str, type[BaseModel]] = {"envelope": Envelope, "event": Event, "anomaly": Anomaly}
JSON_DIR = Path(__file__).resolve().parent / "json"


def render(model: type[BaseModel]) -> str:
    return json.dumps(model.model_json_schema(mode="serialization"), indent=2, sort_keys=True) + "\n"


def export(directory: Path = JSON_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in MODELS.items():
        path = directory / f"{name}.schema.json"
        path.write_text(render(model))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in export():
        print(path, file=sys.stderr)
