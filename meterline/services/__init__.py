"""Runnable roles, one function each, called by the CLI and nothing else.

``run_gateway``, ``run_worker``, ``run_store``, ``run_simulator`` each run one
role in the current process until told to stop; ``run_up`` starts them all on
this machine with the embedded broker.
"""

from .roles import run_detector, run_gateway, run_simulator, run_store, run_worker
from .up import run_up

__all__ = ["run_detector", "run_gateway", "run_simulator", "run_store", "run_up", "run_worker"]
