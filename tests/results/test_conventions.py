"""Operator categories and the published convention: names only, no torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pytest_flopbudget.results import conventions
from pytest_flopbudget.results.conventions import (
    base_name,
    category,
    is_costly,
    normalize,
    published_macs,
)
from pytest_flopbudget.results.result import FlopResult, Record


@pytest.mark.parametrize(
    ("operator", "expected"),
    [
        ("aten::mm", "matmul"),
        ("aten.addmm.default", "matmul"),
        ("aten::linear", "matmul"),
        ("aten::_grouped_mm", "matmul"),
        ("aten::bilinear", "matmul"),
        ("aten::einsum", "matmul"),
        ("aten::_convolution", "conv"),
        ("aten.convolution_backward.default", "conv"),
        ("aten::conv_transpose2d", "conv"),
        ("aten::scaled_dot_product_attention", "attention"),
        ("aten._scaled_dot_product_flash_attention_for_cpu.default", "attention"),
        ("aten::lstm", "recurrent"),
        ("aten::_convolution_mode", "conv"),
        ("aten::fft_rfft2", "fft"),
        ("aten.fft_irfftn.default", "fft"),
        ("aten._fft_r2c.default", "fft"),
        ("aten::_fft_c2c", "fft"),
        ("aten::stft", "fft"),
        ("mylib::fft_conv", "fft"),
        ("quantized::linear_dynamic", "matmul"),
        ("quantized.linear.default", "matmul"),
        ("aten._flash_attention_forward.default", "attention"),
        ("aten::_efficient_attention_backward", "attention"),
        ("aten::_scaled_dot_product_flash_attention_backward", "attention"),
        ("torch_attn::_varlen_attn", "attention"),
        ("torch_attn._varlen_attn_backward.default", "attention"),
        ("higher_order::flex_attention", "attention"),
        ("higher_order::flex_attention_backward", "attention"),
        ("aten::layer_norm", "norm"),
        ("aten.native_layer_norm.default", "norm"),
        ("aten::mul_", "elementwise"),
        ("aten.mul.Tensor", "elementwise"),
        ("aten::leaky_relu_", "elementwise"),
        # names that contain a costly word but are resampling or data movement
        ("aten::upsample_bilinear2d", "elementwise"),
        ("aten.upsample_bilinear2d.vec", "elementwise"),
        ("aten::upsample_linear1d", "elementwise"),
        ("aten::upsample_trilinear3d", "elementwise"),
        ("aten::im2col", "elementwise"),
        ("aten::col2im", "elementwise"),
        ("torchvision::roi_align", "elementwise"),
        # unknown operators: by whole words
        ("mylib::fused_gemm_bias", "matmul"),
        ("mylib::flash_attn_varlen", "attention"),
        ("mylib::conv3x3", "conv"),
        ("mylib::commit", "elementwise"),  # "mm" inside a word is no matmul
        ("mylib::linearize_graph", "elementwise"),
    ],
)
def test_category(operator: str, expected: str) -> None:
    assert category(operator) == expected
    assert is_costly(operator) == (expected in conventions.COSTLY)


def test_fft_is_costly_but_not_published() -> None:
    assert "fft" in conventions.COSTLY and "fft" not in conventions.PUBLISHED


def test_names_from_trace_and_dispatch_agree() -> None:
    assert normalize("aten.addmm.default") == normalize("aten::addmm") == "aten::addmm"
    assert normalize("aten.mul_.Tensor") == "aten::mul_"
    assert base_name("aten::mul_") == base_name("aten.mul.Tensor") == "mul"
    assert base_name("aten::__and__") == "__and__"


def test_set_category_and_bad_category() -> None:
    try:
        conventions.set_category("mylib::thing", "matmul")
        assert category("mylib::thing") == "matmul"
        assert category("mylib.thing.default") == "matmul"
    finally:
        conventions._TABLE.pop("mylib::thing", None)
    with pytest.raises(ValueError, match="unknown category 'gemm'"):
        conventions.set_category("mylib::x", "gemm")


def test_published_convention_counts_matmul_conv_attention_only() -> None:
    result = FlopResult(
        macs=1000 + 200 + 30 + 4 + 5 + 6 + 7,
        by_operator={
            "aten::linear": 1000,
            "aten::_convolution": 200,
            "aten::scaled_dot_product_attention": 30,
            "aten::lstm": 4,
            "aten::layer_norm": 5,
            "aten::mul": 6,
            "aten::fft_rfft": 7,
        },
    )
    assert result.by_category == {
        "matmul": 1000, "conv": 200, "attention": 30, "recurrent": 4, "fft": 7, "norm": 5, "elementwise": 6,
    }
    assert list(result.by_category) == list(conventions.CATEGORIES)
    assert result.published_macs == 1234
    assert published_macs(result.by_category, include=("conv",)) == 200


def test_record_keeps_categories_through_json() -> None:
    record = Record(id="t", nodeid="t", macs=11, status="ok", categories={"matmul": 10, "elementwise": 1})
    again = Record.from_json(record.to_json())
    assert again.categories == {"matmul": 10, "elementwise": 1}
    assert again.published_macs == 10
    assert Record(id="t", nodeid="t", macs=1, status="ok").published_macs is None


def test_conventions_import_no_torch() -> None:
    code = "import sys, pytest_flopbudget.results.conventions, pytest_flopbudget.results.result\nassert 'torch' not in sys.modules\n"
    subprocess.run([sys.executable, "-c", code], check=True)
