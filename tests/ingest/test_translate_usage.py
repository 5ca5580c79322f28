"""Usage arithmetic between the shapes (``ingest/translate/usage``).

OpenAI's ``prompt_tokens`` include cached tokens; Anthropic's ``input_tokens``
exclude cache reads and writes. The client's translated numbers must describe
the same tokens the upstream reported: read back by the gateway's own usage
parser (``ingest.usage``), the total input, the cache reads and the output
are unchanged.
"""

from __future__ import annotations

import pytest

from meterline.ingest.translate.usage import anthropic_usage, openai_usage
from meterline.ingest.usage import anthropic_usage as read_anthropic
from meterline.ingest.usage import openai_usage as read_openai
from meterline.schemas import Usage


def total_input(usage: Usage) -> int:
    return (usage.input_tokens + usage.cache_read_tokens + usage.cache_write_5m_tokens
            + usage.cache_write_1h_tokens)


def test_anthropic_counts_as_openai_counts() -> None:
    assert openai_usage({"input_tokens": 12, "output_tokens": 30,
                         "cache_read_input_tokens": 2000,
                         "cache_creation_input_tokens": 500}) == {
        "prompt_tokens": 2512, "completion_tokens": 30, "total_tokens": 2542,
        "prompt_tokens_details": {"cached_tokens": 2000}}


def test_openai_counts_as_anthropic_counts() -> None:
    assert anthropic_usage({"prompt_tokens": 2512, "completion_tokens": 30,
                            "prompt_tokens_details": {"cached_tokens": 2000}}) == {
        "input_tokens": 512, "output_tokens": 30, "cache_read_input_tokens": 2000,
        "cache_creation_input_tokens": 0}


@pytest.mark.parametrize("block", [
    {"input_tokens": 12, "output_tokens": 30, "cache_read_input_tokens": 2000,
     "cache_creation_input_tokens": 500},
    {"input_tokens": 9, "output_tokens": 1},
    {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 64},
])
def test_an_anthropic_answer_reads_the_same_through_openai_numbers(
        block: dict[str, int]) -> None:
    served, shown = read_anthropic(block), read_openai(openai_usage(block))
    assert (total_input(shown), shown.cache_read_tokens, shown.output_tokens) == (
        total_input(served), served.cache_read_tokens, served.output_tokens)


@pytest.mark.parametrize("block", [
    {"prompt_tokens": 1200, "completion_tokens": 40,
     "prompt_tokens_details": {"cached_tokens": 1024},
     "completion_tokens_details": {"reasoning_tokens": 12}},
    {"prompt_tokens": 5, "completion_tokens": 2},
])
def test_an_openai_answer_reads_the_same_through_anthropic_numbers(
        block: dict[str, object]) -> None:
    served, shown = read_openai(block), read_anthropic(anthropic_usage(block))
    assert (shown.input_tokens, shown.cache_read_tokens, shown.output_tokens) == (
        served.input_tokens, served.cache_read_tokens, served.output_tokens)


def test_missing_or_impossible_counts_read_as_zero() -> None:
    assert openai_usage({}) == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0,
                                "prompt_tokens_details": {"cached_tokens": 0}}
    # a cached count above the prompt (a broken server) never makes input negative
    assert anthropic_usage({"prompt_tokens": 3, "completion_tokens": -1,
                            "prompt_tokens_details": {"cached_tokens": 9}}) == {
        "input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 3,
        "cache_creation_input_tokens": 0}
