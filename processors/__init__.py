"""processors: faust agents that enrich, price and validate envelopes.

Pure functions (``enrich``, ``PriceBook.quote``, ``parse_envelope``) sit apart
from the agent that calls them (``create_worker_app``).
"""

from .app import create_detector_app, create_worker_app, detector_app_id, worker_app_id
from .enrich import Directory, enrich
from .errors import PoisonMessage, ProcessorError
from .price_book import PriceBook, Quote, quantize
from .validate import parse_envelope

__all__ = ["Directory", "PoisonMessage", "PriceBook", "ProcessorError", "Quote",
           "create_detector_app", "create_worker_app", "detector_app_id", "enrich", "parse_envelope",
           "quantize", "worker_app_id"]
