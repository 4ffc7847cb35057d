"""Measured CUDA time against the roofline estimate, case by case, on the local GPU.

    python benchmarks/bench_roofline_gpu.py               # every case, median of 20 (5 for models)
    python benchmarks/bench_roofline_gpu.py --repeat 50 --device h100-sxm

Cases: GEMMs of several shapes and dtypes on each side of the ridge point (bf16, fp16, fp32 with
TF32 off and on, fp8 where the device has it), an elementwise chain (float32 and bfloat16),
scaled_dot_product_attention full and causal (the causal case estimated with the full-matrix and
the effective-attention conventions), VAR-d16 forward and generation (examples/var/model.py), and
a transformers Llama (1.1B-shaped config, random weights) prefill and decode step, all in bf16.

The GEMM, elementwise and attention cases build their OpCost records by hand from the shapes
(the exact kernels timed); the model cases take ``FlopResult.costs`` from ``measure`` on meta
(a model whose capture records no costs is reported as such and skipped). Time is CUDA time
(``torch.cuda.Event`` around each call after warm-up, median of N), launch overhead included;
the estimate is the lower bound, so measured / estimated is at least 1 where the datasheet
figures hold. Without CUDA it prints that it needs a GPU and exits 0. The device is detected from
``torch.cuda.get_device_name()`` (``--device`` overrides).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pytest_flopbudget.deploy import AttentionPattern, Device, Estimate, device, estimate, match_device
from pytest_flopbudget.deploy.attention import causal
from pytest_flopbudget.results.result import FlopResult, OpCost

SIZES = {"float32": 4, "bfloat16": 2, "float16": 2, "float8_e4m3fn": 1}

# (m, n, k, dtype, tf32): the first of each group right of the ridge (compute-bound), the small-m ones left of it.
GEMMS = (
    (8192, 8192, 8192, "bfloat16", False),
    (4096, 4096, 4096, "float16", False),
    (4096, 4096, 4096, "float32", False),
    (4096, 4096, 4096, "float32", True),
    (8192, 8192, 8192, "float8_e4m3fn", False),
    (256, 8192, 8192, "bfloat16", False),
    (16, 8192, 8192, "bfloat16", False),
    (1, 8192, 8192, "bfloat16", False),
)
CHAIN = (1 << 26, ("aten::mul", "aten::add", "aten::relu"))  # 64 Mi elements: 256 MB in float32, beyond any L2
ATTENTION = (4, 16, 4096, 128)  # batch, heads, sequence, head dim
LLAMA = {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32,
         "num_key_value_heads": 4, "vocab_size": 32000}  # a TinyLlama-1.1B-shaped config
PROMPT = 512


def gemm_costs(m: int, n: int, k: int, dtype: str) -> tuple[OpCost, ...]:
    """One ``mm``: reads A (m x k) and B (k x n), writes C (m x n); fp8 writes bf16."""
    size = SIZES[dtype]
    out = 2 if dtype.startswith("float8") else size
    op = "aten::_scaled_mm" if dtype.startswith("float8") else "aten::mm"
    return (OpCost(op, dtype=dtype, macs=m * n * k, bytes_read=(m * k + k * n) * size, bytes_written=m * n * out),)


def chain_costs(numel: int, dtype: str, ops: Sequence[str]) -> tuple[OpCost, ...]:
    """Unfused elementwise ops, each reading one tensor and writing one, one MAC per element."""
    size = SIZES[dtype]
    return tuple(OpCost(op, dtype=dtype, macs=numel, bytes_read=numel * size, bytes_written=numel * size) for op in ops)


def attention_costs(batch: int, heads: int, seq: int, dim: int, dtype: str) -> tuple[OpCost, ...]:
    """A fused attention forward: reads q, k, v and writes the output once; QK^T + AV MACs."""
    tensor = batch * heads * seq * dim * SIZES[dtype]
    return (OpCost("aten::scaled_dot_product_attention", dtype=dtype, macs=batch * heads * seq * seq * 2 * dim,
                   bytes_read=3 * tensor, bytes_written=tensor),)


@dataclass
class Row:
    case: str
    measured_ms: float | None
    estimate: Estimate | None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.measured_ms is None or self.estimate is None or not self.estimate.ms:
            return None
        return self.measured_ms / self.estimate.ms


def format_rows(rows: Sequence[Row], dev: Device) -> str:
    """The table printed at the end: measured, estimated, their ratio and the bound that binds."""
    lines = [f"device: {dev.name} ({dev.source})", "estimate: roofline lower bound, efficiency 1.0",
             f"{'case':<44} {'measured ms':>12} {'estimated ms':>13} {'meas/est':>9}  bound"]
    for row in rows:
        measured = f"{row.measured_ms:12.4f}" if row.measured_ms is not None else f"{'-':>12}"
        est = f"{row.estimate.ms:13.4f}" if row.estimate is not None else f"{'-':>13}"
        ratio = f"{row.ratio:9.2f}" if row.ratio is not None else f"{'-':>9}"
        bound = ""
        if row.estimate is not None:
            share = row.estimate.memory_share if row.estimate.bound == "memory" else row.estimate.compute_share
            bound = f"{row.estimate.bound} ({100 * share:.0f}%)"
        lines.append(f"{row.case:<44} {measured} {est} {ratio}  {bound}{'  ' + row.note if row.note else ''}")
    ratios = [r.ratio for r in rows if r.ratio is not None]
    if ratios:
        lines.append(f"measured / estimated: median {statistics.median(ratios):.2f}, min {min(ratios):.2f}, max {max(ratios):.2f}")
    return "\n".join(lines)


def cuda_ms(fn: Callable[[], Any], repeat: int, warmup: int = 3) -> float:
    """Median CUDA time of ``fn()`` in milliseconds (events around each call, after warm-up)."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        end = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return float(statistics.median(times))


def _torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, name)


def kernel_rows(dev: Device, repeat: int) -> list[Row]:
    import torch
    import torch.nn.functional as F

    rows = []
    cuda = torch.device("cuda")
    for m, n, k, dtype, tf32 in GEMMS:
        name = f"gemm {m}x{n}x{k} {dtype}{' tf32' if tf32 else ''}"
        est = estimate(gemm_costs(m, n, k, dtype), dev, tf32=tf32)
        try:
            torch.backends.cuda.matmul.allow_tf32 = tf32
            if dtype.startswith("float8"):
                a = torch.randn(m, k, device=cuda).to(torch.float8_e4m3fn)
                b = torch.randn(n, k, device=cuda).to(torch.float8_e4m3fn).t()
                one = torch.ones((), device=cuda)

                def fn(a: Any = a, b: Any = b, one: Any = one) -> Any:
                    return torch._scaled_mm(a, b, one, one, out_dtype=torch.bfloat16)
            else:
                a = torch.randn(m, k, device=cuda, dtype=_torch_dtype(dtype))
                b = torch.randn(k, n, device=cuda, dtype=_torch_dtype(dtype))

                def fn(a: Any = a, b: Any = b, one: Any = None) -> Any:
                    return torch.mm(a, b)
            rows.append(Row(name, cuda_ms(fn, repeat), est))
        except Exception as exc:  # an fp8 GEMM on hardware without it, an out-of-memory: report and go on
            rows.append(Row(name, None, est, f"not run: {type(exc).__name__}: {str(exc).splitlines()[0][:60]}"))
        finally:
            torch.backends.cuda.matmul.allow_tf32 = False
    numel, ops = CHAIN
    for dtype in ("float32", "bfloat16"):
        x = torch.randn(numel, device=cuda, dtype=_torch_dtype(dtype))

        def chain(x: Any = x) -> Any:
            return torch.relu(x * 2.0 + 1.0)

        rows.append(Row(f"elementwise chain mul, add, relu {numel} {dtype}", cuda_ms(chain, repeat),
                        estimate(chain_costs(numel, dtype, ops), dev)))
    batch, h, s, d = ATTENTION
    q, k_, v = (torch.randn(batch, h, s, d, device=cuda, dtype=torch.bfloat16) for _ in range(3))
    costs = attention_costs(batch, h, s, d, "bfloat16")
    full_ms = cuda_ms(lambda: F.scaled_dot_product_attention(q, k_, v), repeat)
    causal_ms = cuda_ms(lambda: F.scaled_dot_product_attention(q, k_, v, is_causal=True), repeat)
    rows.append(Row(f"sdpa {batch}x{h}x{s}x{d} bf16 full", full_ms, estimate(costs, dev)))
    rows.append(Row(f"sdpa {batch}x{h}x{s}x{d} bf16 causal, full count", causal_ms, estimate(costs, dev)))
    rows.append(Row(f"sdpa {batch}x{h}x{s}x{d} bf16 causal, effective", causal_ms, estimate(costs, dev, attention=causal(s))))
    return rows


def model_row(name: str, result: FlopResult, run: Callable[[], Any], dev: Device, repeat: int,
              attention: AttentionPattern | None = None) -> Row:
    """Time ``run`` on CUDA and estimate ``result``; a result without costs is reported and not timed."""
    if not result.costs:
        return Row(name, None, None, "skipped: this capture records no FlopResult.costs (bytes moved)")
    est = estimate(result, dev, attention=attention)
    return Row(name, cuda_ms(run, repeat, warmup=2), est)


def var_results(depth: int = 16, batches: Sequence[int] = (1, 16)) -> dict[str, FlopResult]:
    """The meta-side counts of the VAR cases (bf16): forward per batch, generation at batch 1."""
    import torch

    from examples.var.model import VARGenerate, build_var, build_vqvae, dummy_inputs
    from pytest_flopbudget import measure

    bf16, out = torch.bfloat16, {}
    meta = build_var(depth).to(bf16)
    for batch in batches:
        labels, tokens, _ = dummy_inputs(batch=batch)
        out[f"forward {batch}"] = measure(meta, labels, tokens.to(bf16))
    gen = VARGenerate(build_vqvae(), meta).to(bf16)
    out["generate 1"] = measure(gen, torch.zeros(1, dtype=torch.long))
    return out


def var_rows(dev: Device, repeat: int, depth: int = 16) -> list[Row]:
    import torch

    from examples.var.model import VARGenerate, build_var, build_vqvae, dummy_inputs

    bf16, rows = torch.bfloat16, []
    results = var_results(depth)
    real = build_var(depth, device="cuda").to(bf16)
    with torch.no_grad():
        for batch in (1, 16):
            labels, tokens, _ = dummy_inputs(batch=batch, device="cuda")
            tokens = tokens.to(bf16)

            def forward(labels: Any = labels, tokens: Any = tokens) -> Any:
                return real(labels, tokens)

            rows.append(model_row(f"VAR-d{depth} forward batch {batch}", results[f"forward {batch}"], forward, dev, repeat))
        name = f"VAR-d{depth} generation batch 1 (10 scales, cfg)"
        try:
            gen = VARGenerate(build_vqvae(device="cuda"), real).to(bf16)
            labels = torch.zeros(1, dtype=torch.long, device="cuda")
            rows.append(model_row(name, results["generate 1"], lambda: gen(labels), dev, repeat))
        except Exception as exc:  # the forward rows above stand on their own
            rows.append(Row(name, None, None, f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"))
    return rows


def llama_results(config: Any, prompt: int = PROMPT) -> dict[str, FlopResult]:
    """The meta-side counts of the Llama cases (bf16): a prefill of ``prompt`` tokens (logits of the
    last position, as generation computes them) and one decode step after it."""
    import torch
    import transformers

    from pytest_flopbudget import measure

    with torch.device("meta"):
        meta: Any = transformers.LlamaForCausalLM(config)
    meta = meta.to(torch.bfloat16).eval()
    ids = torch.zeros(1, prompt, dtype=torch.long)
    with torch.no_grad():
        prefill = measure(meta, ids, use_cache=True, logits_to_keep=1)
        cache = meta(ids.to("meta"), use_cache=True, logits_to_keep=1).cache
        decode = measure(meta, torch.zeros(1, 1, dtype=torch.long), cache=cache, use_cache=True)
    return {"prefill": prefill, "decode": decode}


def llama_config(**overrides: Any) -> Any:
    import transformers

    return transformers.LlamaConfig(**{**LLAMA, **overrides}, pad_token_id=0, bos_token_id=None, eos_token_id=None)


def llama_rows(dev: Device, repeat: int) -> list[Row]:
    import torch
    import transformers

    config = llama_config()
    results = llama_results(config)
    with torch.device("cuda"):
        real: Any = transformers.LlamaForCausalLM(config)
    real = real.to(torch.bfloat16).eval()
    ids = torch.zeros(1, PROMPT, dtype=torch.long, device="cuda")
    rows = []
    with torch.no_grad():
        rows.append(model_row(f"Llama-1.1B-shaped prefill {PROMPT} tokens", results["prefill"],
                              lambda: real(ids, use_cache=True, logits_to_keep=1), dev, repeat, attention=causal(PROMPT)))
        cache = real(ids, use_cache=True, logits_to_keep=1).cache
        token = torch.zeros(1, 1, dtype=torch.long, device="cuda")

        def step() -> Any:
            out = real(token, cache=cache, use_cache=True)
            cache.crop(PROMPT)  # every timed step decodes after the same cached tokens
            return out

        rows.append(model_row(f"Llama-1.1B-shaped decode 1 token after {PROMPT}", results["decode"], step, dev, repeat))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per kernel case (models: a quarter, at least 3)")
    parser.add_argument("--device", default=None, help="a table entry to estimate for (default: detected)")
    parser.add_argument("--skip-models", action="store_true", help="kernel cases only")
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("bench_roofline_gpu: needs torch and a CUDA GPU; nothing to measure here")
        return 0
    if not torch.cuda.is_available():
        print("bench_roofline_gpu: needs a CUDA GPU (torch.cuda.is_available() is False); nothing to measure here")
        return 0
    reported = torch.cuda.get_device_name()
    dev = device(args.device) if args.device else match_device(reported)
    if dev is None:
        print(f"bench_roofline_gpu: no table entry for {reported!r}; pass --device NAME (known: see docs/deployment.md)")
        return 0
    print(f"GPU: {reported} -> {dev.name}; torch {torch.__version__}")
    started = time.perf_counter()
    rows = kernel_rows(dev, args.repeat)
    if not args.skip_models:
        model_repeat = max(3, args.repeat // 4)
        for part in (var_rows, llama_rows):
            try:
                rows.extend(part(dev, model_repeat))
            except Exception as exc:  # a model case that fails must not hide the others' figures
                rows.append(Row(part.__name__.replace("_rows", ""), None, None, f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"))
            torch.cuda.empty_cache()
    print(format_rows(rows, dev))
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
