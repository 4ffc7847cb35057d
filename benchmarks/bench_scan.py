"""A Mamba-style scan: time of one count against a plain meta forward, and the operators per model.

transformers' MambaForCausalLM without its CUDA kernels runs a per-step selective scan in
Python: a trace unrolls it (one graph node per operator of every step). The default counter
stops the trace past ``TRACE_OP_LIMIT`` operators in all or ``TRACE_CALL_LIMIT`` run by one module
call itself (the scan runs in the mixer's own forward) and counts with the dispatch capture.

    .venv/bin/python benchmarks/bench_scan.py [--tokens 512] [--layers 24] [--hidden 768]

Prints the dispatched operators of one forward, the seconds of a plain meta forward, of the
default counter (trace, falling back), of the dispatch capture, and the ratio to the plain forward.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class _Ops(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.ops += 1
        return func(*args, **(kwargs or {}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--hidden", type=int, default=768)
    opts = parser.parse_args()
    warnings.filterwarnings("ignore")
    from transformers import MambaConfig, MambaForCausalLM

    from pytest_flopbudget.engine.count import (
        TRACE_CALL_LIMIT,
        TRACE_OP_LIMIT,
        count,
        warm_up,
    )

    warm_up()
    config = MambaConfig(vocab_size=50280, hidden_size=opts.hidden, num_hidden_layers=opts.layers, state_size=16, use_mambapy=False)
    with torch.device("meta"):
        model = MambaForCausalLM(config).eval()
    ids = torch.zeros(1, opts.tokens, dtype=torch.long, device="meta")
    with torch.no_grad():
        start = time.perf_counter()
        model(ids)
        plain = time.perf_counter() - start
        with _Ops() as ops:
            model(ids)
    print(f"Mamba hidden={opts.hidden} layers={opts.layers} tokens={opts.tokens}: {ops.ops:,} operators per forward (trace limits: {TRACE_OP_LIMIT:,} in all, {TRACE_CALL_LIMIT:,} in one module call)")
    print(f"plain meta forward      {plain:8.2f} s")
    for counter in ("torchprofile", "flop_counter"):
        start = time.perf_counter()
        result = count(model, (ids,), {}, counter=counter, mode="meta")
        took = time.perf_counter() - start
        print(f"count counter={counter:<12} {took:8.2f} s  {took / plain:5.1f}x  capture={result.capture}  {result.macs:,} MACs")


if __name__ == "__main__":
    main()
