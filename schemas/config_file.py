"""Loading ``Settings`` from the declarative YAML file, with errors that point at lines.

``load_settings`` is the one entry point: it reads the file (and the keys file
beside it), layers the environment over it, resolves secrets from the
environment, and on any invalid value raises ``ConfigError`` listing *every*
problem as ``file:line: section.field: message`` so an operator fixes them in
one pass rather than one restart per typo.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from .settings import Settings

DEFAULT_CONFIG_FILE = "meterline.yaml"
CONFIG_ENV_VAR = "METERLINE_CONFIG"


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` holds one line per issue."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"invalid configuration in {path}:\n  " + "\n  ".join(problems))


def default_config_path() -> str:
    """``$METERLINE_CONFIG`` if set, else ``meterline.yaml`` in the working directory."""
    return os.environ.get(CONFIG_ENV_VAR, DEFAULT_CONFIG_FILE)


def keys_file_for(config_path: str) -> Path:
    """The keys file lives beside the config file: ``meterline.keys.yaml``."""
    path = Path(config_path)
    return path.with_name(path.stem + ".keys.yaml")


class _Located:
    """A YAML document as plain data plus the line of every key path in it."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines: dict[tuple[str | int, ...], int] = {}
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else path
            raise ConfigError(path, [f"{where}: not valid YAML: {exc}"]) from exc
        if node is not None:
            self._index(node, ())
        data = yaml.safe_load(text) if text.strip() else {}
        if not isinstance(data, dict):
            raise ConfigError(path, [f"{path}:1: the file must be a mapping of sections"])
        self.data: dict[str, Any] = data

    def _index(self, node: yaml.Node, loc: tuple[str | int, ...]) -> None:
        self.lines[loc] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                child = (*loc, str(key_node.value))
                self.lines[child] = key_node.start_mark.line + 1
                self._index(value_node, child)
                self.lines[child] = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._index(item, (*loc, index))

    def line_of(self, loc: tuple[str | int, ...]) -> int | None:
        """The line of the deepest part of ``loc`` present in the file."""
        for depth in range(len(loc), 0, -1):
            if loc[:depth] in self.lines:
                return self.lines[loc[:depth]]
        return None


class _DictSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], data: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = dict(data)

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def _read(path: Path) -> _Located | None:
    if not path.exists():
        return None
    return _Located(str(path), path.read_text(encoding="utf-8"))


#: Secrets with no ``*_env`` indirection: only ``METERLINE_<SECTION>__<FIELD>`` sets them.
_ENV_ONLY_SECRETS = {("store", "read_token"), ("store", "operator_token"), ("egress", "body_key"),
                     ("kafka", "sasl_password"), ("kafka", "ssl_key_password")}


def _forbid_inline_secrets(doc: _Located) -> list[str]:
    """Secrets belong in the environment; a file kept in git must not hold them."""
    problems = []
    for loc in doc.lines:
        if loc and loc[-1] in {"api_key", "admin_key", "slack_webhook", "smtp_password"}:
            problems.append(
                f"{doc.path}:{doc.lines[loc]}: {'.'.join(map(str, loc))}: secrets are read from "
                f"the environment only; name the variable with {loc[-1]}_env instead"
            )
        elif len(loc) == 2 and loc in _ENV_ONLY_SECRETS:
            problems.append(
                f"{doc.path}:{doc.lines[loc]}: {'.'.join(map(str, loc))}: secrets are read from "
                f"the environment only; set METERLINE_{loc[0].upper()}__{loc[1].upper()} instead"
            )
    return problems


def _resolve_secrets(settings: Settings, environ: Mapping[str, str]) -> None:
    for provider in settings.providers.values():
        if provider.api_key is None and provider.api_key_env and environ.get(provider.api_key_env):
            provider.api_key = SecretStr(environ[provider.api_key_env])
        if provider.admin_key is None and provider.admin_key_env and environ.get(
                provider.admin_key_env):
            provider.admin_key = SecretStr(environ[provider.admin_key_env])
        if provider.api_key is None and settings.demo_upstream:
            provider.base_url = settings.demo_upstream.rstrip("/")
    for team in settings.teams:
        if team.slack_webhook is None and team.slack_webhook_env:
            value = environ.get(team.slack_webhook_env)
            if value:
                team.slack_webhook = SecretStr(value)
    reports = settings.reports
    if reports.smtp_password is None and reports.smtp_password_env:
        password = environ.get(reports.smtp_password_env)
        reports.smtp_password = SecretStr(password) if password else None
    if reports.slack_webhook is None and reports.slack_webhook_env:
        webhook = environ.get(reports.slack_webhook_env)
        reports.slack_webhook = SecretStr(webhook) if webhook else None


def load_settings(
    config_path: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Load the configuration: ``overrides`` > environment > file > defaults.

    A missing file is not an error (every field has a default); an unreadable
    or invalid one raises ``ConfigError`` naming file, line and field.
    """
    path = config_path or default_config_path()
    environ = os.environ if environ is None else environ
    doc = _read(Path(path))
    file_data = dict(doc.data) if doc else {}
    problems = _forbid_inline_secrets(doc) if doc else []

    keys_doc = _read(keys_file_for(path))
    if keys_doc is not None:
        file_data["keys"] = list(file_data.get("keys") or []) + list(keys_doc.data.get("keys") or [])
    file_data.setdefault("keys_file", str(keys_file_for(path)))

    class _Loaded(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, env_settings, _DictSource(settings_cls, file_data))

    try:
        settings: Settings = _Loaded(**overrides)
    except ValidationError as exc:
        problems.extend(_describe(exc, doc, path))
    if problems:
        raise ConfigError(path, problems)
    _resolve_secrets(settings, environ)
    return settings


def _describe(exc: ValidationError, doc: _Located | None, path: str) -> list[str]:
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        field = ".".join(str(part) for part in loc) or "(top level)"
        line = doc.line_of(loc) if doc else None
        where = f"{path}:{line}" if line else path
        problems.append(f"{where}: {field}: {error['msg']}")
    return problems
