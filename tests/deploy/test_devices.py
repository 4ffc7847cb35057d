"""The device table: figures present and consistent, lookup by name, user entries and their errors."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_flopbudget.deploy import devices as devices_module
from pytest_flopbudget.deploy.devices import DEVICES, RATES, Device, device, load_devices, match_device, register_device

REQUIRED = ("h100-sxm", "h200", "a100-80gb-sxm", "l40s", "l4", "t4", "rtx-4090", "cpu")


@pytest.fixture(autouse=True)
def _builtin_table() -> Iterator[None]:
    devices_module._reset()
    yield
    devices_module._reset()


def test_every_required_device_is_in_the_table_with_a_source() -> None:
    for name in REQUIRED:
        dev = DEVICES[name]
        assert dev.fp32 > 0 and dev.bandwidth > 0 and dev.memory > 0
        assert dev.source, name


@pytest.mark.parametrize("name", [n for n in REQUIRED if n != "cpu"])
def test_tensor_rates_are_at_least_the_vector_rates(name: str) -> None:
    """A tensor unit is never slower than the vector units for the same dtype; TF32 is half of BF16
    where both exist (the dense figures, never the sparse ones, are in the table)."""
    dev = DEVICES[name]
    assert dev.fp16 is not None and dev.vector_fp16 is not None
    assert dev.fp16 >= dev.vector_fp16 >= dev.fp32
    if dev.bf16 is not None:
        assert dev.bf16 >= (dev.vector_bf16 or 0)
    if dev.tf32 is not None and dev.bf16 is not None and name != "rtx-4090":
        assert dev.tf32 == pytest.approx(dev.bf16 / 2, rel=0.02)
    if dev.fp8 is not None and dev.bf16 is not None:
        assert dev.fp8 == pytest.approx(2 * dev.bf16, rel=0.02)


def test_hopper_dense_rates_are_half_the_sparse_datasheet_figures() -> None:
    """The H100 SXM datasheet prints 1,979 TFLOPS BF16 and 3,958 FP8 with sparsity; dense is half."""
    h100 = DEVICES["h100-sxm"]
    assert h100.bf16 == pytest.approx(1979 / 2, abs=0.5)
    assert h100.fp8 == pytest.approx(3958 / 2, abs=0.5)
    assert DEVICES["h200"].bf16 == h100.bf16 and DEVICES["h200"].bandwidth == 4.8


def test_missing_units_are_none() -> None:
    t4 = DEVICES["t4"]
    assert t4.bf16 is None and t4.fp8 is None and t4.tf32 is None
    assert DEVICES["a100-80gb-sxm"].fp8 is None
    assert t4.peak("bf16") is None and t4.peak("fp16") == 65e12


def test_ridge_point() -> None:
    assert DEVICES["h100-sxm"].ridge == pytest.approx(989.4 / 3.35)


@pytest.mark.parametrize(
    ("reported", "entry"),
    [
        ("NVIDIA H200", "h200"),
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("NVIDIA A100-SXM4-80GB", "a100-80gb-sxm"),
        ("NVIDIA L40S", "l40s"),
        ("NVIDIA L4", "l4"),
        ("Tesla T4", "t4"),
        ("NVIDIA GeForce RTX 4090", "rtx-4090"),
        ("h100", "h100-sxm"),
        ("H100 SXM", "h100-sxm"),
    ],
)
def test_driver_names_match_the_table(reported: str, entry: str) -> None:
    found = match_device(reported)
    assert found is not None and found.name == entry


@pytest.mark.parametrize("reported", ["NVIDIA H100 PCIe", "NVIDIA A100-PCIE-40GB", "NVIDIA H100 NVL", "AMD Instinct MI300X", "NVIDIA GeForce RTX 4090 Laptop GPU"])
def test_other_cards_are_not_taken_for_a_table_entry(reported: str) -> None:
    assert match_device(reported) is None


def test_lookup_ignores_case_spaces_and_underscores_and_knows_aliases() -> None:
    assert device("H100_SXM") is DEVICES["h100-sxm"]
    assert device("A100") is DEVICES["a100-80gb-sxm"]
    assert device(DEVICES["l4"]) is DEVICES["l4"]
    with pytest.raises(ValueError, match="unknown device 'b300'; known: h100-sxm"):
        device("b300")


def test_register_device_from_a_conftest() -> None:
    dev = register_device("My GPU", fp32=40, bf16=300, bandwidth=1.5, memory=48, efficiency=0.7)
    assert device("my-gpu") is dev and dev.bf16 == 300 and dev.efficiency == 0.7
    assert match_device("my gpu") is dev
    with pytest.raises(ValueError, match="already registered; pass replace=True"):
        register_device("my-gpu", fp32=1, bandwidth=1, memory=1)
    again = register_device("my-gpu", fp32=1, bandwidth=1, memory=1, replace=True)
    assert device("my-gpu") is again


@pytest.mark.parametrize(
    ("figures", "message"),
    [
        ({"fp32": 1, "bandwidth": 1}, "device 'x': missing memory"),
        ({"fp32": 1, "bandwidth": 1, "memory": 1, "bf61": 3}, "unknown field.s. bf61"),
        ({"fp32": -1, "bandwidth": 1, "memory": 1}, "fp32 must be a positive number"),
        ({"fp32": 1, "bandwidth": "fast", "memory": 1}, "bandwidth must be a positive number"),
        ({"fp32": 1, "bandwidth": 1, "memory": 1, "bf16": 0}, "bf16 must be a positive number or absent"),
        ({"fp32": 1, "bandwidth": 1, "memory": 1, "efficiency": 1.5}, r"efficiency must be in \(0, 1\]"),
        ({"fp32": float("nan"), "bandwidth": 1, "memory": 1}, "fp32 must be a positive number"),
    ],
)
def test_bad_entries_raise_one_clear_line(figures: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        register_device("x", **figures)
    assert "x" not in DEVICES


def test_peak_names_a_rate() -> None:
    assert set(RATES) >= {"fp32", "tf32", "bf16", "fp16", "fp8", "int8", "vector_fp16", "vector_bf16"}
    with pytest.raises(ValueError, match="unknown rate 'fp4'"):
        DEVICES["h200"].peak("fp4")


def test_a_device_can_be_built_directly() -> None:
    dev = Device("edge", fp32=2, bandwidth=0.1, memory=8)
    assert register_device(dev) is dev and device("EDGE") is dev


def test_devices_from_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "devices.toml"
    path.write_text('[devices.lab-gpu]\nfp32 = 50.0\nbf16 = 400\nbandwidth = 2.0\nmemory = 64\nsource = "our lab"\n'
                    '\n[devices.h200]\nfp32 = 66.9\nbf16 = 989.4\nbandwidth = 4.8\nmemory = 141\nefficiency = 0.6\n')
    loaded = load_devices(path)
    assert [d.name for d in loaded] == ["lab-gpu", "h200"]
    assert device("lab-gpu").bf16 == 400 and device("h200").efficiency == 0.6


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[devices.a]\nfp32 = 1\nbandwidth = 1\n", r"devices file .*: device 'a': missing memory"),
        ("[devices.a\n", "is not valid TOML"),
        ("[other]\nx = 1\n", r"has no \[devices.NAME\] tables"),
        ("[devices]\na = 3\n", "devices.a must be a table"),
        ("[devices.a]\nfp32 = 1\nbandwidth = 1\nmemory = 1\nclock = 3\n", "unknown field.s. clock"),
    ],
)
def test_bad_toml_files_name_the_file_and_the_entry(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "devices.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_devices(path)


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read devices file"):
        load_devices(tmp_path / "nope.toml")


def test_importing_deploy_never_imports_torch() -> None:
    code = "import sys, pytest_flopbudget.deploy; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_documented_table_is_the_table() -> None:
    """docs/deployment.md's device table shows exactly the figures the estimate uses."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "deployment.md").read_text(encoding="utf-8")
    columns = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8", "vector_fp16", "vector_bf16", "bandwidth", "memory")
    rows = {}
    for line in doc.splitlines():
        if line.startswith("| `") and line.count("|") == len(columns) + 2:
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0].strip("`")] = cells[1:]
    assert set(rows) == set(REQUIRED) == set(DEVICES)
    for name, cells in rows.items():
        dev = DEVICES[name]
        for column, cell in zip(columns, cells):
            value = getattr(dev, column)
            assert (float(cell) if cell else None) == value, f"{name}.{column}: docs {cell!r}, table {value!r}"
        assert dev.source


def test_figures_id_fingerprints_what_an_estimate_depends_on_and_nothing_else() -> None:
    import hashlib

    from pytest_flopbudget.deploy.roofline import MODEL, figures_id

    lab = register_device("lab", fp32=1, bf16=10, bandwidth=0.5, memory=8)
    # The documented text: the model, then every rate, the bandwidth and the efficiency as floats (None where absent).
    text = f"{MODEL};fp32=1.0;tf32=None;bf16=10.0;fp16=None;fp8=None;int8=None;vector_fp16=None;vector_bf16=None;fp64=None;bandwidth=0.5;efficiency=1.0"
    assert figures_id("lab") == figures_id(lab) == hashlib.sha256(text.encode()).hexdigest()[:8]
    same = Device("other-name", fp32=1.0, bf16=10.0, bandwidth=0.5, memory=80, source="elsewhere", aliases=("x",))
    assert figures_id(same) == figures_id(lab)  # name, memory, source and aliases do not change a time
    for change in ({"bandwidth": 0.25}, {"efficiency": 0.5}, {"bf16": 20}, {"fp16": 10}):
        other = Device("lab", **{"fp32": 1, "bf16": 10, "bandwidth": 0.5, "memory": 8, **change})
        assert figures_id(other) != figures_id(lab), change
    register_device("lab", fp32=1, bf16=10, bandwidth=0.25, memory=8, replace=True)
    assert figures_id("lab") != figures_id(lab)
