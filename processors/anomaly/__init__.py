"""processors.anomaly: streaming anomaly detection over priced events.

Pure detectors (``TeamDetectors``, ``ProviderDetectors`` and the parts they
combine) read event time only and keep their state in a ``State`` mapping;
``register_anomaly_agents`` wires them into the faust app with changelog-backed
tables on team- and provider-keyed streams.
"""

from .agent import register_anomaly_agents
from .detectors import ProviderDetectors, TeamDetectors
from .observation import Observation
from .state import State

__all__ = ["Observation", "ProviderDetectors", "State", "TeamDetectors",
           "register_anomaly_agents"]
