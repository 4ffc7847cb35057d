"""Rules of the fast Fourier transforms (``torch.fft`` as traced, and the ``_fft_*`` kernels they dispatch to).

Convention: a complex transform of N points costs 5/2 N log2 N MACs (the 5 N log2 N real
operations of a radix-2 FFT, as FFTW counts them, one MAC being two), and a transform whose
input or output is real (``rfft``, ``irfft``, ``hfft``, ``ihfft``, ``fft`` of a real tensor) half
that, 5/4 N log2 N. A multi-dimensional transform over sizes n1 ... nk is priced as one of
N = n1 * ... * nk points (the sum of its passes along each dimension); every other dimension is
a batch of independent transforms. The total is rounded to the nearest MAC once.
``torch.utils.flop_counter.FlopCounterMode`` counts no FFT; torchprofile counts ``fft_fft`` as free.
"""

from __future__ import annotations

from math import log2, prod
from typing import Any

from torchprofile.ir import Node, Variable

from .registry import _shape, rule


def fft_macs(batch: int, points: int, real: bool) -> int:
    """``batch`` transforms of ``points`` points: 5/2 N log2 N MACs each, 5/4 N log2 N for a real one."""
    if points <= 1 or batch == 0:
        return 0
    return round(batch * points * log2(points) * (1.25 if real else 2.5))


def _complex(v: Variable) -> bool:
    return "complex" in str(v.dtype).lower()


def _dims(value: Any, ndim: int, default: list[int] | None, sizes: Any = None) -> list[int]:
    """The transformed dimensions, non-negative: ``value`` (an int or a list), else ``default``, else
    (fftn with ``dim=None``) the last ``len(s)`` dimensions, or all of them."""
    if isinstance(value, int):
        dims = [value]
    elif isinstance(value, (list, tuple)):
        dims = [int(d) for d in value]
    elif default is not None:
        dims = default
    elif isinstance(sizes, (list, tuple)):
        dims = list(range(ndim - len(sizes), ndim))
    else:
        dims = list(range(ndim))
    return [d % ndim for d in dims]


def _cost(shape: list[int], dims: list[int], real: bool) -> int:
    points = prod(shape[d] for d in dims)
    total = prod(shape)
    return fft_macs(total // points if points else 0, points, real)


def _family(node: Node) -> tuple[str, list[int] | None]:
    """``("1", [-1])``, ``("2", [-2, -1])`` or ``("n", None)``: how the op names its dimensions."""
    name = node.operator.split("::", 1)[-1]
    if name.endswith("fftn"):
        return "n", None
    if name.endswith("fft2"):
        return "2", [-2, -1]
    return "1", [-1]


@rule("aten::fft_fft", "aten::fft_ifft", "aten::fft_fft2", "aten::fft_ifft2", "aten::fft_fftn", "aten::fft_ifftn")
def _fft_c2c_like(node: Node) -> int:
    """Complex output: N from the output's transformed dimensions; real input halves it."""
    out = _shape(node.outputs[0])
    family, default = _family(node)
    dims = _dims(node.inputs[2].value, len(out), default, node.inputs[1].value if family != "1" else None)
    return _cost(out, dims, real=not _complex(node.inputs[0]))


@rule("aten::fft_irfft", "aten::fft_irfft2", "aten::fft_irfftn", "aten::fft_hfft", "aten::fft_hfft2", "aten::fft_hfftn")
def _fft_to_real(node: Node) -> int:
    """Real output: N from the output's transformed dimensions, halved."""
    out = _shape(node.outputs[0])
    family, default = _family(node)
    dims = _dims(node.inputs[2].value, len(out), default, node.inputs[1].value if family != "1" else None)
    return _cost(out, dims, real=True)


@rule("aten::fft_rfft", "aten::fft_rfft2", "aten::fft_rfftn", "aten::fft_ihfft", "aten::fft_ihfft2", "aten::fft_ihfftn")
def _fft_from_real(node: Node) -> int:
    """Real input: N from the input's transformed dimensions (or ``n``/``s`` where given), halved."""
    shape = _shape(node.inputs[0])
    family, default = _family(node)
    sizes = node.inputs[1].value
    dims = _dims(node.inputs[2].value, len(shape), default, sizes if family != "1" else None)
    if isinstance(sizes, int):
        sizes = [sizes]
    if isinstance(sizes, (list, tuple)):
        for d, n in zip(dims, sizes, strict=False):
            if n is not None and int(n) > 0:
                shape[d] = int(n)
    return _cost(shape, dims, real=True)


@rule("aten::_fft_r2c")
def _fft_r2c(node: Node) -> int:
    """Real input (self, dim, normalization, onesided): N from the input at ``dim``, halved."""
    shape = _shape(node.inputs[0])
    return _cost(shape, _dims(node.inputs[1].value, len(shape), None), real=True)


@rule("aten::_fft_c2r")
def _fft_c2r(node: Node) -> int:
    """Real output (self, dim, normalization, last_dim_size): N from the output at ``dim``, halved."""
    out = _shape(node.outputs[0])
    return _cost(out, _dims(node.inputs[1].value, len(out), None), real=True)


@rule("aten::_fft_c2c")
def _fft_c2c(node: Node) -> int:
    """Complex to complex (self, dim, normalization, forward): N from the input at ``dim``."""
    shape = _shape(node.inputs[0])
    return _cost(shape, _dims(node.inputs[1].value, len(shape), None), real=False)


@rule("aten::stft")
def _stft(node: Node) -> int:
    """One transform of ``n_fft`` points per frame (self, n_fft, ...): output [..., n_freq, frames]
    (``[..., 2]`` more when not ``return_complex``); real input halves it."""
    n_fft = int(node.inputs[1].value)
    out = _shape(node.outputs[0])
    if not _complex(node.outputs[0]) and len(out) >= 3 and out[-1] == 2:
        out = out[:-1]
    return fft_macs(prod(out) // out[-2], n_fft, real=not _complex(node.inputs[0]))


@rule("aten::istft")
def _istft(node: Node) -> int:
    """One inverse transform of ``n_fft`` points per frame (self [..., n_freq, frames], n_fft, ...), real output."""
    n_fft = int(node.inputs[1].value)
    shape = _shape(node.inputs[0])
    if not _complex(node.inputs[0]) and len(shape) >= 3 and shape[-1] == 2:
        shape = shape[:-1]
    return fft_macs(prod(shape) // shape[-2], n_fft, real=True)
