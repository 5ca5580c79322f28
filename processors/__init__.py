"""processors: the enrichment worker and the anomaly detectors.

Pure functions (``enrich``, ``PriceBook.quote``, ``parse_envelope``) sit apart
from the loops that call them: ``EnrichWorker`` (a confluent-kafka batch loop)
and the detectors' faust app (``create_detector_app``).
"""

from .app import create_detector_app, detector_app_id
from .enrich import Directory, enrich
from .errors import PoisonMessage, ProcessorError
from .price_book import PriceBook, Quote, quantize
from .validate import parse_envelope
from .worker import EnrichWorker

__all__ = ["Directory", "EnrichWorker", "PoisonMessage", "PriceBook", "ProcessorError", "Quote",
           "create_detector_app", "detector_app_id", "enrich", "parse_envelope",
           "quantize"]
