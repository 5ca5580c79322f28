"""Named jobs that run inside the store process, and the client that asks for them.

With embedded ClickHouse only the store process may open the data, so any
command that *writes* ClickHouse (``meterline reprice``, report runs) asks the
running store to do it: ``POST /jobs/<name>`` on the store's query endpoint,
with the job's arguments as a JSON object body, answers ``200`` with the job's
JSON result once the job has finished. The call carries the operator
credential (``Authorization: Bearer``, ``sinks.store_access``). Errors answer ``{"error": message}``:
``404`` unknown job, ``400`` bad arguments (``JobArgumentError``), ``500`` the
job failed (logged with its traceback in the store's log).

Registering a job (in ``run_store``, or any function it calls)::

    jobs.register("reprice", lambda args: {...})   # Job = (args) -> JSON-able dict

A job runs on the HTTP server's request thread, one thread per request, and
blocks that request until it returns; it must take the writer's lock around
anything that writes ``events`` or a rollup. Results are encoded with orjson
(``Decimal`` and ``datetime`` become strings).
"""

from __future__ import annotations

import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import orjson

from meterline.schemas.store_auth import auth_headers

log = logging.getLogger(__name__)

Job = Callable[[Mapping[str, Any]], Mapping[str, Any]]


class JobError(Exception):
    """A job could not be run or failed; the message says why."""


class UnknownJob(JobError):
    """No job is registered under that name."""


class JobArgumentError(JobError):
    """The job's arguments are missing or invalid (HTTP 400)."""


class StoreNotRunning(JobError):
    """Nothing answers at the store's URL: the caller may run the job itself."""


class JobRegistry:
    """Jobs by name. Registration happens at start-up; ``run`` may be called from any thread."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def register(self, name: str, job: Job) -> None:
        """Make ``job`` callable as ``name``; a second registration of a name is an error."""
        with self._lock:
            if name in self._jobs:
                raise ValueError(f"job {name!r} is already registered")
            self._jobs[name] = job

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._jobs)

    def run(self, name: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """Run job ``name`` with ``args`` in this thread; its result as a JSON-able dict."""
        with self._lock:
            job = self._jobs.get(name)
        if job is None:
            raise UnknownJob(f"no job {name!r}; registered: {', '.join(self.names()) or 'none'}")
        return dict(job(args))


def _json_default(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode_result(result: Mapping[str, Any]) -> bytes:
    return orjson.dumps(result, default=_json_default,
                        option=orjson.OPT_NON_STR_KEYS | orjson.OPT_NAIVE_UTC)


def remote_job(base_url: str, name: str, args: Mapping[str, Any],
               timeout_s: float = 3600.0, *, token: str | None) -> dict[str, Any]:
    """Run job ``name`` on the store at ``base_url`` with the operator ``token``.

    Raises ``StoreNotRunning`` when nothing listens there, ``UnknownJob`` /
    ``JobArgumentError`` / ``JobError`` with the store's message otherwise
    (a missing or wrong credential is a ``JobError`` saying so).
    """
    request = urllib.request.Request(f"{base_url}/jobs/{quote(name)}",
                                     data=encode_result(args), method="POST",
                                     headers={"content-type": "application/json",
                                              **auth_headers(token)})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            result: dict[str, Any] = orjson.loads(response.read())
            return result
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            message = str(orjson.loads(body).get("error", body.decode(errors="replace")))
        except orjson.JSONDecodeError:
            message = body.decode(errors="replace").strip()
        if exc.code == 401 and token is None:
            message += (" (no operator token found: set METERLINE_STORE__OPERATOR_TOKEN, or run "
                        "this as the user whose `meterline up` wrote <data_dir>/store/"
                        "operator.token)")
        error = {404: UnknownJob, 400: JobArgumentError}.get(exc.code, JobError)
        raise error(message) from exc
    except urllib.error.URLError as exc:
        raise StoreNotRunning(f"no store at {base_url} ({exc.reason})") from exc
