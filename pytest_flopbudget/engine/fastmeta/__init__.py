"""Output shapes of the common operators on the ``meta`` device, without torch's Python meta kernels.

:mod:`.mode` holds the dispatch mode (:class:`FastMeta`), its switches and the table of shape
functions; :mod:`.layout` the stride and broadcasting helpers; the other modules add the shape
functions of one operator family each (elementwise, matrix products, reductions and norms,
copies, convolutions and resizing, fills and factories). Importing this package registers them all.
:mod:`.memo` remembers the outputs of torch's slow meta kernels (the calls no shape function covers)
by the layout of their inputs, so a layer repeated, or a decoding step, runs each of them once.
"""

from __future__ import annotations

from . import conv, copies, elementwise, factories, matmul, reductions  # noqa: F401  (registers the shape functions)
from .mode import (
    SHAPES,
    FastMeta,
    building,
    collector_paused,
    enabled,
    meta_init,
    meta_mode,
    on_meta,
    plain,
    shape_fn,
)

__all__ = [
    "FastMeta", "SHAPES", "building", "collector_paused", "enabled", "meta_init", "meta_mode", "on_meta", "plain", "shape_fn",
]
