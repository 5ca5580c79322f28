"""Routing: aliases, defaults, refusal of unlisted models, and credential injection."""

from __future__ import annotations

import pytest

from meterline.ingest.errors import UnknownModel
from meterline.ingest.routing import Router
from meterline.schemas import Settings


def settings(**gateway: object) -> Settings:
    return Settings(
        gateway=gateway,
        providers={
            "openai": {"kind": "openai", "base_url": "https://api.openai.com/", "api_key": "sk-o"},
            "anthropic": {"kind": "anthropic", "base_url": "https://api.anthropic.com",
                          "api_key": "sk-ant-a"},
            "azure": {"kind": "azure", "base_url": "https://acme.openai.azure.com",
                      "api_key": "az", "api_version": "2024-10-21"},
            "vllm": {"kind": "openai_compatible", "base_url": "http://gpu:8000"},
        },
        models={"gpt-4o": {"provider": "azure", "model": "gpt4o-prod"},
                "llama": {"provider": "vllm", "model": "meta-llama/Llama-3.3-70B-Instruct"}},
    )


CLIENT = [("authorization", "Bearer ml-client"), ("x-api-key", "ml-client"), ("host", "gw"),
          ("content-length", "10"), ("anthropic-beta", "x"), ("user-agent", "codex_cli_rs/0.1"),
          ("x-meterline-repo", "acme/api"), ("accept-encoding", "gzip")]


def test_alias_to_azure_deployment_with_api_key_header() -> None:
    route = Router(settings()).route(False, "gpt-4o")
    assert route.url("/v1/chat/completions", b"a=1") == (
        "https://acme.openai.azure.com/openai/deployments/gpt4o-prod/chat/completions"
        "?api-version=2024-10-21&a=1")
    headers = route.headers(CLIENT)
    assert headers["api-key"] == "az" and "authorization" not in headers


def test_unlisted_model_goes_to_surface_default_with_provider_key() -> None:
    router = Router(settings())
    openai = router.route(False, "gpt-4.1")
    assert (openai.provider_name, openai.served_model) == ("openai", "gpt-4.1")
    assert openai.url("/v1/responses") == "https://api.openai.com/v1/responses"
    headers = openai.headers(CLIENT)
    assert headers["authorization"] == "Bearer sk-o"
    assert headers["accept-encoding"] == "identity"
    assert {"host", "content-length", "x-api-key", "x-meterline-repo"}.isdisjoint(headers)
    assert headers["user-agent"] == "codex_cli_rs/0.1" and headers["anthropic-beta"] == "x"

    anthropic = router.route(True, "claude-opus-4-1")
    assert anthropic.url("/v1/messages", b"beta=true") == (
        "https://api.anthropic.com/v1/messages?beta=true")
    headers = anthropic.headers(CLIENT)
    assert headers["x-api-key"] == "sk-ant-a" and "authorization" not in headers
    assert headers["anthropic-version"] == "2023-06-01"


def test_openai_compatible_without_key_sends_no_credential() -> None:
    route = Router(settings()).route(False, "llama")
    assert route.served_model == "meta-llama/Llama-3.3-70B-Instruct"
    assert route.url("/v1/chat/completions") == "http://gpu:8000/v1/chat/completions"
    assert {"authorization", "x-api-key", "api-key"}.isdisjoint(route.headers(CLIENT))


def test_unlisted_model_refused_when_not_allowed() -> None:
    router = Router(settings(allow_unlisted_models=False))
    with pytest.raises(UnknownModel, match="Models available: gpt-4o, llama"):
        router.route(False, "gpt-4.1")
    assert router.route(False, "llama").provider_name == "vllm"
