"""Loading the declarative configuration: priorities, secrets, and located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from meterline.schemas import ConfigError, load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_example_config_loads(tmp_path: Path) -> None:
    settings = load_settings(str(REPO_ROOT / "meterline.yaml"), environ={})
    assert {team.name for team in settings.teams} == {"platform", "payments", "data"}
    assert settings.providers["openai"].api_key is None


def test_every_bad_field_is_reported_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "meterline.yaml"
    path.write_text(
        "timezone: Mars/Olympus\n"
        "kafka:\n"
        "  partitions: 0\n"
        "teams:\n"
        "  - name: platform\n"
        "    budget_usd: lots\n"
        "providers:\n"
        "  openai:\n"
        "    kind: openai\n"
        "    base_url: https://api.openai.com\n"
        "    api_key: sk-live-secret\n"
        "    admin_key: sk-admin-live-secret\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(str(path), environ={})
    text = str(caught.value)
    assert f"{path}:1: timezone:" in text
    assert f"{path}:3: kafka.partitions:" in text
    assert f"{path}:6: teams.0.budget_usd:" in text
    assert f"{path}:11: providers.openai.api_key: secrets are read from the environment" in text
    assert f"{path}:12: providers.openai.admin_key: secrets are read from the environment" in text
    assert "sk-live-secret" not in text and "sk-admin-live-secret" not in text


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "meterline.yaml"
    path.write_text("kafka:\n  partitions: [1, 2\n")
    with pytest.raises(ConfigError, match=rf"{path}:\d+: not valid YAML"):
        load_settings(str(path), environ={})


def test_environment_overrides_file_and_secrets_come_from_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "meterline.yaml"
    path.write_text("kafka:\n  bootstrap_servers: file:9092\n  partitions: 3\n"
                    "providers:\n  openai:\n    kind: openai\n    base_url: https://api.openai.com\n"
                    "    api_key_env: MY_OPENAI_KEY\n    admin_key_env: MY_OPENAI_ADMIN_KEY\n")
    monkeypatch.setenv("METERLINE_KAFKA__BOOTSTRAP_SERVERS", "env:9092")
    settings = load_settings(str(path), environ={"MY_OPENAI_KEY": "sk-from-env",
                                                 "MY_OPENAI_ADMIN_KEY": "sk-admin-from-env"})
    assert settings.kafka.bootstrap_servers == "env:9092"
    assert settings.kafka.partitions == 3
    key = settings.providers["openai"].api_key
    assert key is not None and key.get_secret_value() == "sk-from-env"
    admin = settings.providers["openai"].admin_key
    assert admin is not None and admin.get_secret_value() == "sk-admin-from-env"
    assert "sk-from-env" not in repr(settings) and "sk-admin-from-env" not in repr(settings)


def test_demo_upstream_serves_only_providers_without_keys(tmp_path: Path) -> None:
    path = tmp_path / "meterline.yaml"
    path.write_text("demo_upstream: http://127.0.0.1:9/\n")
    settings = load_settings(str(path), environ={"ANTHROPIC_API_KEY": "sk-ant"})
    assert settings.providers["openai"].base_url == "http://127.0.0.1:9"
    assert settings.providers["anthropic"].base_url == "https://api.anthropic.com"


def test_unknown_team_reference_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "meterline.yaml"
    path.write_text("teams:\n  - name: platform\nusers:\n  - name: zoe\n    team: nowhere\n")
    with pytest.raises(ConfigError, match="unknown team 'nowhere'"):
        load_settings(str(path), environ={})
