"""The default counter against a bare meta pass of the same call, side by side with torch and torchprofile.

Per case, in one fresh Python process each (this script re-invoked with ``--child``), all on the CPU:

  bare          ``model(*args)`` on the meta device under ``torch.no_grad()``, no counter (torch's own
                meta execution)
  default       ``measure(model, *args)`` with the defaults (counter "torchprofile": the dispatch capture,
                mode "auto")
  ratio         best default / best bare (the two measured alternately, back to back)
  trace         ``measure.using(counter="trace")`` (the TorchScript trace capture, the default before)
  FlopCounter   ``torch.utils.flop_counter.FlopCounterMode`` around the same meta call
  torchprofile  plain ``torchprofile.profile_macs`` on a real-weight copy (where it runs; "-" where not)
  first         the default counter's first count in the process (lazy imports inside torch included)
  afresh        the compiled MLP only: a count made afresh each time (the default gives a compiled module's
                count again from memory where dynamo's guards pass as before, engine/recall.py)

Every figure is the best of ``--repeat`` runs after the first; MACs of the default counter, the trace
capture and plain torchprofile are printed too (the default's must be torchprofile's where it runs, up to
the operators torchprofile prices at zero: the routed experts' ``_grouped_mm``, see docs/counting.md).

Cases: transformers 5 causal LMs built on meta from small configs (hidden 256, 4 layers, 256 tokens; the MoE models in bf16):
Llama, Qwen3-MoE, Gemma-3, DeepSeek-V3; Llama generation with ``prefill_and_decode`` (64-token prompt,
32 new tokens); a ``torch.compile``d MLP; a tiny model with a train-mode BatchNorm and attention (the
first count of a process).

Run from the repository root::

    .venv/bin/python benchmarks/bench_default_path.py [--repeat 3] [--cases llama gemma3 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CASES = ("llama", "qwen3-moe", "gemma3", "deepseek-v3", "llama-generate", "compiled", "tiny-bn-attention")


# ---- models ------------------------------------------------------------------------------


def _llm(case: str, device: str) -> Any:
    import warnings

    import torch
    import transformers

    config: Any
    cls: Any
    common: dict[str, Any] = dict(vocab_size=1000, hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=8,
                  num_key_value_heads=4, max_position_embeddings=512)
    if case in ("llama", "llama-generate"):
        config, cls = transformers.LlamaConfig(**common), transformers.LlamaForCausalLM
    elif case == "qwen3-moe":
        config = transformers.Qwen3MoeConfig(**common, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=128)
        cls = transformers.Qwen3MoeForCausalLM
    elif case == "gemma3":
        config = transformers.Gemma3TextConfig(**common, head_dim=32, sliding_window=64)
        cls = transformers.Gemma3ForCausalLM
    elif case == "deepseek-v3":
        config = transformers.DeepseekV3Config(
            **common, n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=128, n_group=2, topk_group=1,
            first_k_dense_replace=1, q_lora_rank=64, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=16, v_head_dim=32,
        )
        cls = transformers.DeepseekV3ForCausalLM
    else:
        raise ValueError(case)
    with warnings.catch_warnings(), torch.device(device):
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        model = cls(config).eval()
    # torch's meta kernel of grouped_mm (the experts' path) takes bf16 only: a bare meta pass needs it
    return model.to(torch.bfloat16) if case in ("qwen3-moe", "deepseek-v3") else model


def build(case: str, device: str) -> tuple[Any, tuple[Any, ...]]:
    import torch
    import torch.nn as nn

    if case in ("llama", "qwen3-moe", "gemma3", "deepseek-v3"):
        return _llm(case, device), (torch.zeros(1, 256, dtype=torch.long, device=device),)
    if case == "llama-generate":
        from pytest_flopbudget.engine.generation import prefill_and_decode

        return prefill_and_decode(_llm(case, device), 32), (torch.zeros(1, 64, dtype=torch.long, device=device),)
    if case == "compiled":
        with torch.device(device):
            model = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 64)).eval()
        return torch.compile(model), (torch.zeros(8, 64, device=device),)
    if case == "tiny-bn-attention":

        class Tiny(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.norm = nn.BatchNorm1d(16)
                self.attn = nn.MultiheadAttention(16, 2, batch_first=True)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                h = self.norm(x.transpose(1, 2)).transpose(1, 2)
                out: torch.Tensor = self.attn(h, h, h, need_weights=False)[0]
                return out

        with torch.device(device):
            return Tiny().train(), (torch.zeros(2, 8, 16, device=device),)
    raise ValueError(case)


# ---- child: one case ------------------------------------------------------------------------


def _best(fn: Any, repeat: int) -> tuple[float, Any]:
    times, value = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return min(times), value


def run_child(case: str, repeat: int) -> None:
    import warnings

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from pytest_flopbudget import measure

    warnings.simplefilter("ignore")
    model, args = build(case, "meta")

    start = time.perf_counter()
    default = measure(model, *args)
    first = time.perf_counter() - start

    def bare() -> None:
        with torch.no_grad():
            model(*args)

    defaults, bares = [], []
    for _ in range(repeat):  # back to back, so a machine whose speed drifts moves both alike
        b, _ = _best(bare, 1)
        d, _ = _best(lambda: measure(model, *args), 1)
        bares.append(b)
        defaults.append(d)
    afresh_s = None
    if case == "compiled":  # the default counts again from memory (engine/recall.py): a count made afresh each time
        from pytest_flopbudget.engine import recall

        def afresh() -> None:
            recall.forget()
            measure(model, *args)

        afresh_s, _ = _best(afresh, repeat)
    try:
        trace_s, trace_macs = _best(lambda: measure.using(counter="trace")(model, *args).macs, repeat)
    except Exception as exc:
        trace_s, trace_macs = None, f"{type(exc).__name__}"

    def flop_counter() -> int:
        with torch.no_grad(), FlopCounterMode(display=False) as mode:
            model(*args)
        return int(mode.get_total_flops() // 2)

    try:
        flop_s, flop_macs = _best(flop_counter, repeat)
    except Exception as exc:
        flop_s, flop_macs = None, f"{type(exc).__name__}"
    tp_s, tp_macs = None, None
    if case not in ("compiled", "llama-generate"):  # plain torchprofile: a real traced forward
        try:
            from torchprofile import profile_macs

            real_model, real_args = build(case, "cpu")
            tp_s, tp_macs = _best(lambda: int(profile_macs(real_model, real_args)), 1)  # type: ignore[arg-type]
        except Exception as exc:
            tp_macs = f"{type(exc).__name__}"
    print(json.dumps({
        "bare_s": min(bares), "default_s": min(defaults), "ratio": min(defaults) / min(bares), "first_s": first, "afresh_s": afresh_s,
        "trace_s": trace_s, "flop_counter_s": flop_s, "torchprofile_s": tp_s,
        "macs": default.macs, "capture": default.capture, "trace_macs": trace_macs,
        "flop_counter_macs": flop_macs, "torchprofile_macs": tp_macs,
        "dynamo": "torch._dynamo" in sys.modules,
    }), flush=True)


# ---- parent ---------------------------------------------------------------------------------


def _s(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value >= 0.01 else f"{value:.6f}"  # a compiled module's pass: tens of microseconds


def _n(value: Any) -> str:
    return str(value) if value is None or isinstance(value, str) else format(value, ",")


def child_results(script: str, cases: list[str], repeat: int) -> Iterator[tuple[str, dict[str, Any] | str]]:
    """Each case run by ``script --child CASE --repeat N`` in a fresh process, from the repository root:
    ``(case, the figures its last output line holds)``, or ``(case, why it failed)``."""
    for case in cases:
        cmd = [sys.executable, os.path.abspath(script), "--child", case, "--repeat", str(repeat)]
        env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            yield case, f"failed (rc {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}"
            continue
        yield case, json.loads(proc.stdout.strip().splitlines()[-1])


def parent_options(doc: str, cases: tuple[str, ...], repeat: int, child: Any) -> argparse.Namespace | None:
    """The command line of a benchmark that runs each case in a fresh process: ``--cases``, ``--repeat``;
    with the hidden ``--child CASE`` (how :func:`child_results` starts it), ``child(case, repeat)`` runs
    and None is returned."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--cases", nargs="*", default=list(cases), choices=cases)
    parser.add_argument("--repeat", type=int, default=repeat)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        child(options.child, options.repeat)
        return None
    return options


def main() -> None:
    options = parent_options(__doc__ or "", CASES, 3, run_child)
    if options is None:
        return
    print("| case | bare meta s | default s | default/bare | first count s | count afresh s | trace s | FlopCounterMode s | torchprofile s | "
          "capture | MACs default | MACs trace | MACs torchprofile | FlopCounterMode MACs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for case, r in child_results(__file__, options.cases, options.repeat):
        if isinstance(r, str):
            print(f"| {case} | {r} |")
            continue
        print(f"| {case} | {_s(r['bare_s'])} | {_s(r['default_s'])} | {r['ratio']:.2f}x | {_s(r['first_s'])} | {_s(r['afresh_s'])} | "
              f"{_s(r['trace_s'])} | {_s(r['flop_counter_s'])} | {_s(r['torchprofile_s'])} | {r['capture']} | "
              f"{r['macs']:,} | {_n(r['trace_macs'])} | {r['torchprofile_macs'] if r['torchprofile_macs'] is None or isinstance(r['torchprofile_macs'], str) else format(r['torchprofile_macs'], ',')} | "
              f"{r['flop_counter_macs'] if isinstance(r['flop_counter_macs'], str) else format(r['flop_counter_macs'], ',')} |", flush=True)


if __name__ == "__main__":
    main()
