"""Memory as a cost: bytes each operator moves (:mod:`.traffic`) and the peak of live tensor bytes
over a call (:mod:`.liveness`). Imports torch, never pytest; only ``results`` and ``engine``."""

from __future__ import annotations

from pytest_flopbudget.engine.memory.liveness import Liveness, liveness_pass
from pytest_flopbudget.engine.memory.traffic import call_bytes, node_bytes, op_costs, record

__all__ = ["Liveness", "call_bytes", "liveness_pass", "node_bytes", "op_costs", "record"]
