"""The ``flopbudget`` command: count a model without writing a test, compare two models, compare two baselines.

::

    flopbudget count package.module:factory --input 1x3x256x256 --input int64:1x77
    flopbudget count timm:convnext_tiny
    flopbudget count hf:path/to/config.json --tokens 2048
    flopbudget compare package.module:small package.module:large --input 1x3x224x224
    flopbudget compare-baselines OLD.toml NEW.toml --rel 2%

Models are built on the ``meta`` device where they can be (no memory, no weights), with the fast
path on; a factory that needs real values is built on the CPU instead. Bad input (a model that
cannot be found, a shape that cannot be read, a file that is not a baseline) exits with status 2
and one line naming the fix; ``compare-baselines`` exits 1 when a test grew past the threshold.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from pytest_flopbudget.baseline import store
from pytest_flopbudget.engine.options import OPTIONS
from pytest_flopbudget.report.common import fmt_delta, fmt_gflops, fmt_gmacs, fmt_params
from pytest_flopbudget.results.conventions import CATEGORIES
from pytest_flopbudget.results.result import FLOPS_PER_MAC, GIGA, FlopResult, module_deltas, pct

PROG = "flopbudget"
DTYPES = {
    "float32": "float32", "float": "float32", "fp32": "float32", "float16": "float16", "half": "float16", "fp16": "float16",
    "bfloat16": "bfloat16", "bf16": "bfloat16", "float64": "float64", "double": "float64",
    "int64": "int64", "long": "int64", "int32": "int32", "int": "int32", "int16": "int16", "int8": "int8",
    "uint8": "uint8", "bool": "bool",
}
_SHAPE = re.compile(r"^\d+(x\d+)*$")


class CliError(Exception):
    """Bad input: the message is the one line printed before exiting with status 2."""


# ------------------------------------------------------------------ inputs


@dataclass(frozen=True)
class InputSpec:
    dtype: str
    shape: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.dtype}:{'x'.join(map(str, self.shape))}"


def parse_input(text: str) -> InputSpec:
    """``1x3x256x256`` (float32) or ``int64:1x77``: a dtype, a colon, then the sizes joined by ``x``."""
    dtype, sep, shape = text.strip().rpartition(":")
    dtype = dtype.strip().lower() if sep else "float32"
    shape = shape.strip().lower()
    if dtype not in DTYPES:
        raise CliError(f"--input {text!r}: unknown dtype {dtype!r}; use one of {', '.join(sorted(set(DTYPES.values())))}")
    if not _SHAPE.match(shape):
        raise CliError(f"--input {text!r}: a shape is sizes joined by x, such as 1x3x224x224 (optionally dtype:1x77)")
    sizes = tuple(int(s) for s in shape.split("x"))
    if any(s == 0 for s in sizes):
        raise CliError(f"--input {text!r}: every size must be at least 1")
    return InputSpec(DTYPES[dtype], sizes)


def make_inputs(specs: Sequence[InputSpec], device: Any) -> list[Any]:
    """Zero tensors of the given shapes and dtypes on ``device`` (zeros are valid token ids too)."""
    import torch

    return [torch.zeros(spec.shape, dtype=getattr(torch, spec.dtype), device=device) for spec in specs]


# ------------------------------------------------------------------ models


@dataclass
class Built:
    name: str
    model: Any
    inputs: list[InputSpec]  # what the model brings (timm's input size, hf's tokens) when --input is not given
    where: str  # "meta" or "cpu": where the model was built


def build(name: str, tokens: int | None = None) -> Built:
    """The model a name stands for: ``package.module:factory``, ``timm:NAME`` or ``hf:CONFIG``."""
    if name.startswith("timm:"):
        return _timm(name, name[len("timm:"):])
    if name.startswith("hf:"):
        return _hf(name, name[len("hf:"):], tokens)
    return _factory(name)


def _on_meta(make: Any) -> tuple[Any, str]:
    """``make()`` on the meta device with the fast path on; on the CPU when that fails (a constructor that
    needs real values), so any model that builds at all is counted."""
    from pytest_flopbudget.engine.fastmeta import on_meta

    try:
        with on_meta():
            return make(), "meta"
    except Exception:
        return make(), "cpu"


def _factory(name: str) -> Built:
    module_name, sep, attr = name.partition(":")
    if not sep or not module_name or not attr:
        raise CliError(f"model {name!r}: name a factory as package.module:function (or timm:NAME, hf:path/to/config.json)")
    if str(Path.cwd()) not in sys.path and "" not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # a factory next to where the command runs imports as with python -m
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CliError(f"model {name!r}: cannot import {module_name}: {exc}; run from the directory that holds it or install it") from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise CliError(f"model {name!r}: {module_name} has no {attr!r}; check the name after the colon")
        target = getattr(target, part)
    if not callable(target):
        raise CliError(f"model {name!r}: {attr} is a {type(target).__name__}, not a function or class that builds the model")
    try:
        model, where = _on_meta(target)
    except Exception as exc:
        raise CliError(f"model {name!r}: the factory failed: {type(exc).__name__}: {exc}") from None
    return Built(name, _checked_model(name, model), [], where)


def _checked_model(name: str, model: Any) -> Any:
    if isinstance(model, type) or not callable(model):
        raise CliError(f"model {name!r}: the factory returned {type(model).__name__}, not a model; return an nn.Module instance")
    return model


def _timm(name: str, model_name: str) -> Built:
    try:
        import timm  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise CliError(f"model {name!r}: timm is not installed; pip install timm") from None
    if model_name not in timm.list_models():
        raise CliError(f"model {name!r}: timm has no model {model_name!r}; "
                       f"`python -c \"import timm; print(timm.list_models('*{model_name[:4]}*'))\"` lists names")
    try:
        model, where = _on_meta(lambda: timm.create_model(model_name, pretrained=False))
    except Exception as exc:
        raise CliError(f"model {name!r}: timm could not build it: {type(exc).__name__}: {exc}") from None
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    size = cfg.get("input_size")
    inputs = [InputSpec("float32", (1, *size))] if size else []
    return Built(name, model, inputs, where)


def _hf(name: str, config_path: str, tokens: int | None) -> Built:
    path = Path(config_path)
    if not path.exists():
        raise CliError(f"model {name!r}: no such file or directory {config_path}; give a local config.json (or its directory)")
    try:
        import transformers
    except ImportError:
        raise CliError(f"model {name!r}: transformers is not installed; pip install transformers") from None
    try:
        if path.is_dir():
            config = transformers.AutoConfig.from_pretrained(str(path))
        else:
            data = json.loads(path.read_text(encoding="utf-8"))
            model_type = data.pop("model_type", None)
            if not model_type:
                raise CliError(f"model {name!r}: {config_path} has no model_type; is it a transformers config.json?")
            config = transformers.AutoConfig.for_model(model_type, **data)
    except CliError:
        raise
    except Exception as exc:
        raise CliError(f"model {name!r}: cannot read the config {config_path}: {type(exc).__name__}: {exc}") from None
    try:
        model, where = _on_meta(lambda: transformers.AutoModelForCausalLM.from_config(config))  # type: ignore[no-untyped-call,unused-ignore]
    except Exception as exc:
        raise CliError(f"model {name!r}: transformers could not build a causal LM from it: {type(exc).__name__}: {exc}") from None
    inputs = [InputSpec("int64", (1, tokens))] if tokens else []
    return Built(name, model, inputs, where)


def count_model(built: Built, specs: Sequence[InputSpec], counter: str, mode: str, unpriced: str) -> FlopResult:
    import torch

    from pytest_flopbudget.engine.count import count

    specs = list(specs) or built.inputs
    if not specs:
        hint = " or --tokens N" if built.name.startswith("hf:") else ""
        raise CliError(f"model {built.name!r}: give its inputs: --input 1x3x224x224 (repeat for more inputs){hint}")
    params = list(built.model.parameters()) if isinstance(built.model, torch.nn.Module) else []
    device = params[0].device if params else torch.device("meta")
    inputs = make_inputs(specs, device)
    try:
        return count(built.model, tuple(inputs), {}, counter=counter, mode=mode, unpriced=unpriced)
    except Exception as exc:
        raise CliError(f"model {built.name!r}: could not count it on {', '.join(map(str, specs))}: {type(exc).__name__}: {exc}") from None


# ------------------------------------------------------------------ the printed reports


def _share(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:5.1f}%" if whole else "    -"


def report_lines(name: str, result: FlopResult, specs: Sequence[InputSpec], top: int) -> list[str]:
    """The report of one model: totals, then where the compute goes (categories, top modules)."""
    lines = [
        f"model:     {name}",
        f"inputs:    {', '.join(map(str, specs))}",
        f"MACs:      {result.macs:,}",
        f"FLOPs:     {result.flops:,} = {fmt_gflops(result.gflops)} GFLOPs (2 x MACs)",
        f"published: {fmt_gmacs(result.published_macs)} GMACs (matmul, conv, attention, recurrent: the papers' convention)",
        f"params:    {result.params:,} ({fmt_params(result.params)} M)",
        f"counter:   {result.counter}, {result.mode}",
        "by category:",
    ]
    categories = result.by_category
    lines += [f"  {cat:<12} {categories[cat]:>20,} MACs  {_share(categories[cat], result.macs)}" for cat in CATEGORIES if categories.get(cat)]
    ranked = result.top_modules(top)
    if ranked:
        width = max(len(path) for path, _ in ranked)
        lines.append(f"top {len(ranked)} modules:")
        lines += [f"  {path:<{width}}  {macs:>20,} MACs  {_share(macs, result.macs)}" for path, macs in ranked]
    if result.unpriced:
        lines.append("counted as 0 (no rule): " + ", ".join(f"{op} x{n}" for op, n in sorted(result.unpriced.items())))
    lines += [f"note: {note}" for note in result.notes]
    return lines


def result_json(name: str, result: FlopResult, specs: Sequence[InputSpec], top: int) -> dict[str, Any]:
    return {
        "model": name, "inputs": [str(s) for s in specs], "macs": result.macs, "flops": result.flops, "gflops": result.gflops,
        "published_macs": result.published_macs, "published_gmacs": result.published_macs / GIGA, "params": result.params,
        "categories": result.by_category, "top_modules": [{"module": p, "macs": m} for p, m in result.top_modules(top)],
        "unpriced": dict(result.unpriced), "counter": result.counter, "mode": result.mode, "notes": list(result.notes),
    }


def compare_lines(a: tuple[str, FlopResult], b: tuple[str, FlopResult], specs: Sequence[InputSpec]) -> list[str]:
    """Two models side by side: totals and categories, with B's change against A."""
    (name_a, ra), (name_b, rb) = a, b
    rows: list[tuple[str, str, str, str]] = [
        ("MACs", f"{ra.macs:,}", f"{rb.macs:,}", fmt_delta(pct(rb.macs, ra.macs))),
        ("GFLOPs", fmt_gflops(ra.gflops), fmt_gflops(rb.gflops), fmt_delta(pct(rb.macs, ra.macs))),
        ("published GMACs", fmt_gmacs(ra.published_macs), fmt_gmacs(rb.published_macs), fmt_delta(pct(rb.published_macs, ra.published_macs))),
        ("params (M)", fmt_params(ra.params), fmt_params(rb.params), fmt_delta(pct(rb.params, ra.params))),
    ]
    ca, cb = ra.by_category, rb.by_category
    rows += [(f"{cat} MACs", f"{ca[cat]:,}", f"{cb[cat]:,}", fmt_delta(pct(cb[cat], ca[cat]))) for cat in CATEGORIES if ca.get(cat) or cb.get(cat)]
    head = ("", "A", "B", "B vs A")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    out = [f"A: {name_a}", f"B: {name_b}", f"inputs: {', '.join(map(str, specs))}", ""]
    for row in [head, *rows]:
        out.append(f"{row[0]:<{widths[0]}}  " + "  ".join(cell.rjust(w) for cell, w in zip(row[1:], widths[1:])))
    return out


# ------------------------------------------------------------------ two baselines


def _load_baseline(path: str) -> store.Baseline:
    target = Path(path)
    if not target.is_file():
        raise CliError(f"{path}: no such baseline file; give the path of a flopbudget.toml")
    try:
        return store.load(target)
    except store.BaselineError as exc:
        raise CliError(str(exc).splitlines()[0]) from None


def compare_baselines(old_path: str, new_path: str, rel: float, abs_gflops: float, top: int = 3) -> tuple[list[str], bool]:
    """What changed from ``old`` to ``new``, per test and per module; True when a test grew past
    ``max(rel * old, abs_gflops)`` (tests new or gone never fail)."""
    old, new = _load_baseline(old_path).entries, _load_baseline(new_path).entries
    lines: list[str] = []
    failed = False
    raised: list[str] = []
    lowered: list[str] = []
    for rid in sorted(set(old) & set(new)):
        before, after = old[rid].macs, new[rid].macs
        if after != before:
            (raised if after > before else lowered).append(rid)
    for what, ids in (("raised", raised), ("lowered", lowered)):
        for rid in sorted(ids, key=lambda r: (-abs(pct(new[r].macs, old[r].macs)), r)):
            before, after = old[rid].macs, new[rid].macs
            allowed = max(rel * before, abs_gflops * GIGA / FLOPS_PER_MAC)
            over = after - before > allowed
            failed = failed or over
            mark = "  FAIL" if over else ""
            lines.append(f"{what} {fmt_delta(pct(after, before))}: {rid}  {fmt_gflops(FLOPS_PER_MAC * before / GIGA)} -> "
                         f"{fmt_gflops(FLOPS_PER_MAC * after / GIGA)} GFLOPs ({after - before:+,} MACs){mark}")
            for path, delta in module_deltas(new[rid].modules, old[rid].modules)[:top]:
                lines.append(f"    {path}  {delta:+,} MACs")
    for what, ids in (("new", sorted(set(new) - set(old))), ("gone", sorted(set(old) - set(new)))):
        lines += [f"{what}: {rid}" for rid in ids]
    limit = f"rel {100 * rel:g}%" + (f", abs {abs_gflops:g} GFLOPs" if abs_gflops else "")
    unchanged = len(set(old) & set(new)) - len(raised) - len(lowered)
    verdict = "a test grew past the limit" if failed else "within the limit"
    lines.append(f"{len(raised)} raised, {len(lowered)} lowered, {unchanged} unchanged, "
                 f"{len(set(new) - set(old))} new, {len(set(old) - set(new))} gone ({limit}): {verdict}")
    return lines, failed


# ------------------------------------------------------------------ the command line


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, status 2 (argparse prints the usage too)
        self.exit(2, f"{PROG}: error: {message} (see {self.prog} --help)\n")


def _fraction(text: str) -> float:
    """``0.02`` or ``2%``: two percent."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a fraction like 0.02 or a percentage like 2%, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog=PROG, description="Count a PyTorch model's MACs and FLOPs without a test, compare models and baselines.")
    sub = top.add_subparsers(dest="command", required=True, parser_class=_Parser)
    model_help = "package.module:factory (a function or class that returns the model), timm:NAME, or hf:path/to/config.json"

    def counting(p: argparse.ArgumentParser) -> None:
        p.add_argument("--input", action="append", default=[], metavar="[DTYPE:]SHAPE",
                       help="one input of the model, such as 1x3x224x224 or int64:1x77 (repeat in call order; default dtype float32)")
        p.add_argument("--tokens", type=_positive, metavar="N", help="for hf: models: the length of one sequence of token ids (batch 1)")
        p.add_argument("--counter", choices=OPTIONS["counter"], default=OPTIONS["counter"][0], help="how operators are captured")
        p.add_argument("--mode", choices=("auto", "meta", "real"), default="auto", help="where to count")
        p.add_argument("--unpriced", choices=("fail", "warn"), default="warn",
                       help="a costly operator without a rule: fail or count it as 0 with a warning")
        p.add_argument("--top", type=_positive, default=10, metavar="N", help="how many modules to list (default 10)")
        p.add_argument("--json", action="store_true", help="print JSON instead of text")

    c = sub.add_parser("count", help="count one model and print where the compute goes", description="Count one model.")
    c.add_argument("model", help=model_help)
    counting(c)
    cmp = sub.add_parser("compare", help="count two models on the same inputs, side by side", description="Compare two models.")
    cmp.add_argument("a", metavar="A", help=model_help)
    cmp.add_argument("b", metavar="B", help=model_help)
    counting(cmp)
    cb = sub.add_parser("compare-baselines", help="what changed between two flopbudget.toml files; exit 1 past the threshold",
                        description="Compare two baseline files per test and per module.")
    cb.add_argument("old", metavar="OLD.toml")
    cb.add_argument("new", metavar="NEW.toml")
    cb.add_argument("--rel", type=_fraction, default=0.0, metavar="REL", help="allowed growth per test: 0.02 or 2%% (default 0)")
    cb.add_argument("--abs", type=_non_negative, default=0.0, metavar="GFLOPS", help="allowed growth per test in GFLOPs (default 0)")
    cb.add_argument("--top", type=_positive, default=3, metavar="N", help="modules listed per changed test (default 3)")
    return top


def run(args: argparse.Namespace, out: Any) -> int:
    if args.command == "compare-baselines":
        lines, failed = compare_baselines(args.old, args.new, args.rel, args.abs, args.top)
        out.write("\n".join(lines) + "\n")
        return 1 if failed else 0
    specs = [parse_input(text) for text in args.input]
    if args.command == "count":
        built = build(args.model, args.tokens)
        result = count_model(built, specs, args.counter, args.mode, args.unpriced)
        used = specs or built.inputs
        if args.json:
            out.write(json.dumps(result_json(args.model, result, used, args.top), indent=2) + "\n")
        else:
            out.write("\n".join(report_lines(args.model, result, used, args.top)) + "\n")
        return 0
    built_a, built_b = build(args.a, args.tokens), build(args.b, args.tokens)
    ra = count_model(built_a, specs, args.counter, args.mode, args.unpriced)
    rb = count_model(built_b, specs, args.counter, args.mode, args.unpriced)
    used = specs or built_a.inputs
    if args.json:
        out.write(json.dumps({"a": result_json(args.a, ra, used, args.top), "b": result_json(args.b, rb, used, args.top)}, indent=2) + "\n")
    else:
        out.write("\n".join(compare_lines((args.a, ra), (args.b, rb), used)) + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The ``flopbudget`` command; returns the exit status (0 fine, 1 a baseline grew past the limit, 2 bad input)."""
    args = parser().parse_args(argv)
    try:
        return run(args, sys.stdout)
    except CliError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
