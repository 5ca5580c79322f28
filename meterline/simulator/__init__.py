"""The simulated upstream provider: OpenAI- and Anthropic-compatible, on loopback.

It is the demo upstream when no provider keys are configured and the only fake
in the test suite (Kafka and ClickHouse are always real).
"""

from .provider import LISTED_MODELS, create_provider_app
from .text import estimate_tokens

__all__ = ["LISTED_MODELS", "create_provider_app", "estimate_tokens"]
