"""Generation as a countable call: a language model's prefill plus decode steps with a KV cache.

``model.generate(...)`` asks real values of its outputs (stopping criteria,
``.item()``), so a model built on meta cannot run it; with real weights it
counts (the default counter falls back to the dispatch capture where the
trace cannot follow it). :func:`prefill_and_decode` is the cost of a greedy,
fixed-length generation written as plain forwards, so it counts on meta in
seconds and exactly: one prefill over the prompt, then ``new_tokens - 1``
decode steps of one token each, every step attending to one more cached key,
logits of the last position only (what ``generate`` computes).

Works with any model whose forward takes ``input_ids``, ``use_cache`` and
the cache (``cache=`` in transformers 5, ``past_key_values=`` before) and
returns it in its output; ``logits_to_keep`` is passed where the forward
takes it. Importing this module does not import torch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["prefill_and_decode"]


def _forward_parameters(model: Any) -> set[str]:
    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError, AttributeError):
        return set()


def prefill_and_decode(model: Any, new_tokens: int) -> Callable[..., Any]:
    """A callable ``f(input_ids, **forward_kwargs)`` that runs ``model`` as a greedy generation of
    ``new_tokens`` tokens: the prefill forward over ``input_ids`` and ``new_tokens - 1`` decode forwards.

    Measure it like the model: ``measure(prefill_and_decode(model, 16), input_ids)`` or
    ``flops(prefill_and_decode(model, 16), input_ids)``; the weights are found through the
    closure, so a real-weight model is counted on meta too, never run for real. The token fed
    back is the prompt's last one (values do not change a count); the step count is fixed
    (no early stop at an end-of-sequence token).
    """
    if not isinstance(new_tokens, int) or new_tokens < 1:
        raise ValueError(f"new_tokens must be a positive integer, got {new_tokens!r}")
    params = _forward_parameters(model)
    cache_name = "cache" if "cache" in params else "past_key_values"
    last_only = {"logits_to_keep": 1} if "logits_to_keep" in params else {}

    def generate(input_ids: Any, **forward_kwargs: Any) -> Any:
        out = model(input_ids, use_cache=True, **last_only, **forward_kwargs)
        token = input_ids[:, -1:]
        for _ in range(new_tokens - 1):
            cache = getattr(out, cache_name, None)
            if cache is None:
                raise TypeError(f"{type(model).__name__} returned no {cache_name!r}: it keeps no KV cache to decode with")
            out = model(token, use_cache=True, **{cache_name: cache}, **last_only)
        return out.logits if hasattr(out, "logits") else out

    generate.__qualname__ = f"prefill_and_decode({type(model).__name__}, {new_tokens})"
    generate.forwards = new_tokens  # type: ignore[attr-defined]  # the default counter takes the dispatch capture for more than one
    return generate
