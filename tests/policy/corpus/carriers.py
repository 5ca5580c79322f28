"""How coding agents carry pasted text to a provider: chat prose, fenced code, tool results, patches.

:meth:`Carriers.wrap` puts a snippet between ordinary lines of its own syntax
and then into one of four envelopes: a chat question with a fenced block
(Cursor, Claude Code), a Claude Code ``Read`` tool result with line numbers, a
Codex ``apply_patch`` hunk, or bare text. Filler lines hold nothing sensitive,
so anything a detector flags in them counts against its precision.
"""

from __future__ import annotations

import random

FILLER: dict[str, list[str]] = {
    "env": ["NODE_ENV=production", "PORT=8080", "LOG_LEVEL=info", "FEATURE_NEW_CHECKOUT=true",
            "REDIS_HOST=cache.acme.internal", "WORKERS=4", "TZ=UTC", "SENTRY_ENVIRONMENT=staging"],
    "py": ["import os", "import logging", "from datetime import timedelta",
           "log = logging.getLogger(__name__)",
           "TIMEOUT_S = 30", "def handler(event, context):", "    return {\"statusCode\": 200}",
           "RETRY_BACKOFF = timedelta(seconds=2)"],
    "js": ["const express = require('express');", "const app = express();", "app.use(express.json());",
           "module.exports = { app };", "const PORT = process.env.PORT || 3000;"],
    "ini": ["[defaults]", "output = json", "retries = 3", "timeout = 30"],
    "yaml": ["version: \"3.9\"", "services:", "  api:", "    image: acme/api:2.14.0", "    restart: always",
             "replicas: 3"],
    "json": [],
    "log": ["2025-11-18T10:42:07.118Z INFO  worker started pid=4711 queue=emails",
            "2025-11-18T10:42:07.532Z DEBUG loaded 14 routes in 38 ms",
            "2025-11-18T10:42:09.004Z WARN  slow query took 2113 ms (threshold 2000 ms)",
            "2025-11-18T10:42:09.881Z INFO  GET /healthz 200 1.2ms"],
    "shell": ["$ git status --short", " M src/config.ts", "$ npm run build", "> tsc -p tsconfig.build.json"],
    "diff": ["diff --git a/src/api/client.ts b/src/api/client.ts", "@@ -12,7 +12,9 @@ export class Client {"],
    "sql": ["BEGIN;", "SET search_path TO app, public;", "COMMIT;"],
    "csv": [],
    "prose": [],
    "pem": [],
    "docker": ["FROM python:3.11-slim", "WORKDIR /app", "COPY requirements.txt .",
               "RUN pip install --no-cache-dir -r requirements.txt", "CMD [\"gunicorn\", \"app:app\"]"],
    "js_min": [],
}

FENCE = {"env": "bash", "py": "python", "js": "javascript", "ini": "ini", "yaml": "yaml", "json": "json",
         "log": "text", "shell": "console", "diff": "diff", "sql": "sql", "csv": "csv", "pem": "text",
         "docker": "dockerfile", "js_min": "javascript"}

PATHS = {"env": ".env", "py": "app/settings.py", "js": "src/server.js", "ini": "~/.aws/credentials",
         "yaml": "deploy/values.yaml", "json": "config/local.json", "log": "logs/worker.log",
         "shell": "terminal", "diff": "patch.diff", "sql": "migrations/0042_backfill.sql",
         "csv": "exports/customers.csv", "pem": "keys/deploy.pem", "docker": "Dockerfile",
         "js_min": "dist/app.min.js", "prose": "notes.md"}

QUESTIONS = [
    "Why does this fail in CI but not locally?",
    "Can you refactor this so it reads the values from the environment instead?",
    "What's wrong here? The service keeps restarting.",
    "Explain this error and suggest a fix.",
    "Please add a retry with exponential backoff around this.",
    "Is this config right for production?",
    "Convert this to TypeScript.",
    "Write a unit test for this.",
]


class Carriers:
    """Wraps snippets into agent messages, choosing envelope and filler with ``rng``."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def wrap(self, syntax: str, snippet: str) -> str:
        filler = FILLER.get(syntax, [])
        before = self.rng.sample(filler, k=min(len(filler), self.rng.randint(0, 3)))
        after = self.rng.sample(filler, k=min(len(filler), self.rng.randint(0, 2)))
        body = "\n".join([*before, snippet, *after])
        if syntax == "prose":
            return f"{snippet} {self.rng.choice(QUESTIONS)}"
        envelope = self.rng.choice(["chat", "chat", "read", "patch", "bare"])
        path = PATHS[syntax]
        if envelope == "chat":
            return f"{self.rng.choice(QUESTIONS)}\n\n```{FENCE[syntax]}\n{body}\n```\n"
        if envelope == "read":
            numbered = "\n".join(f"{n:>6}\t{line}" for n, line in enumerate(body.split("\n"), start=1))
            return f"<tool_result name=\"Read\" path=\"{path}\">\n{numbered}\n</tool_result>"
        if envelope == "patch":
            added = "\n".join(f"+{line}" for line in body.split("\n"))
            return f"*** Begin Patch\n*** Update File: {path}\n@@\n{added}\n*** End Patch"
        return body
