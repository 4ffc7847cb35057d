"""Input checks that read a value on the meta device, answered as a valid input answers them.

Some model code reads one value of a tensor only to validate or classify its input, and
computes the same work whatever the answer is for a valid default input: transformers'
causal LMs ask whether ``position_ids`` pack several sequences into a row
(``(mask[:, -1] == 0).all()``) whenever no cache is used, which gradient checkpointing
forces. On meta there is no value to read and the read raises. :class:`AnsweredChecks`
answers such reads, and only those: a read made inside one of the functions listed in
:data:`KNOWN_CHECKS` gets the answer an ordinary input gives, and the assumption is
reported (:attr:`AnsweredChecks.assumptions`, for ``FlopResult.notes``). Every other read
of a meta value still raises, as before.

The answers keep the counted work the same as on such an input: none of them changes
which matmuls or attention kernels run, or their shapes; they only skip building a mask
that an ordinary input does not need.
"""

from __future__ import annotations

import sys
from typing import Any

import torch

from pytest_flopbudget.engine.context import PlainMode

__all__ = ["KNOWN_CHECKS", "LOCAL_SCALAR", "AnsweredChecks"]

LOCAL_SCALAR = torch.ops.aten._local_scalar_dense.default  # a value read: bool(), .item(), an ``if`` on a tensor

_DEPTH = 40  # frames searched above the read for the checking function (the modes in between take ~4 each)

# (module, function) -> (the answer an ordinary input gives, the assumption as the note states it)
KNOWN_CHECKS: dict[tuple[str, str], tuple[Any, str]] = {
    ("transformers.masking_utils", "find_packed_sequence_indices"): (
        True, "position_ids hold one sequence per row, not packed sequences (transformers' packed-sequence check)",
    ),
    ("transformers.masking_utils", "_ignore_causal_mask_sdpa"): (
        True, "the attention mask pads no token (transformers' check whether SDPA can skip the mask)",
    ),
    ("transformers.masking_utils", "_ignore_bidirectional_mask_sdpa"): (
        True, "the attention mask pads no token (transformers' check whether SDPA can skip the mask)",
    ),
}


def _checking_function(limit: int = _DEPTH) -> tuple[str, str] | None:
    frame = sys._getframe(2)
    for _ in range(limit):
        if frame is None:
            return None
        key = (frame.f_globals.get("__name__", ""), frame.f_code.co_name)
        if key in KNOWN_CHECKS:
            return key
        frame = frame.f_back  # type: ignore[assignment]
    return None


def _meta_bool(args: tuple[Any, ...]) -> bool:
    t = args[0] if args else None
    return isinstance(t, torch.Tensor) and t.is_meta and t.dtype == torch.bool


class AnsweredChecks(PlainMode):
    """Answer a value read of a meta bool tensor (``bool()``, ``.item()``, ``.all()`` in an ``if``) made inside
    a known input check; collect the assumptions made. Other reads fall through (and raise on meta)."""

    def __init__(self) -> None:
        super().__init__()
        self.assumptions: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        if func is LOCAL_SCALAR:
            answer = self.answer(args)
            if answer is not None:
                return answer
        return func(*args, **(kwargs or {}))

    def answer(self, args: tuple[Any, ...]) -> bool | None:
        """The answer to a value read (``aten::_local_scalar_dense`` of ``args``) made inside a known check, or
        None (the read is no known check's: it runs, and raises on meta). A capture's own dispatch mode asks
        this directly, sparing every operator a pass through one more mode."""
        if not _meta_bool(args):
            return None
        key = _checking_function(_DEPTH + 4)
        if key is None:
            return None
        answer, assumption = KNOWN_CHECKS[key]
        if assumption not in self.assumptions:
            self.assumptions.append(assumption)
        return bool(answer)

    def notes(self) -> list[str]:
        return [f"assumed on meta: {assumption}" for assumption in self.assumptions]
