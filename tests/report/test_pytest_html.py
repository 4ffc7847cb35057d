"""pytest-html integration: FLOP columns and a per-test breakdown in its report; and everything
working with pytest-html disabled (-p no:html) or not installed at all.

A Linear(64 -> w) on (4, 64) costs 4 * 64 * w MACs = 2 * 4 * 64 * w / 1e9 GFLOPs.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
import textwrap

import pytest

from pytest_flopbudget.report import fmt_delta, fmt_gflops

pytest.importorskip("pytest_html")

SUITE = """
import pytest
import torch
from torch import nn

WIDTH = {width}


def linear(width):
    return nn.Linear(64, width, device="meta"), torch.empty(4, 64, device="meta")


def test_grows(flops):
    flops(*linear(WIDTH))


@pytest.mark.flop_budget(gflops=1e-6)
def test_over(flops):
    flops(*linear(512))


def test_keys(flops):
    flops(*linear(8), key="small")
    flops(*linear(16), key="big")


def test_plain():
    pass
"""


def gflops(width: int) -> float:
    return 2 * 4 * 64 * width / 1e9


def pytest_html_data(path) -> tuple[list[str], dict]:
    """The header cells and the test data pytest-html wrote (its rows are built from a JSON blob)."""
    text = path.read_text(encoding="utf-8")
    head = re.search(r'<thead id="results-table-head">(.*?)</thead>', text, flags=re.S).group(1)
    header = re.findall(r"<th[^>]*>.*?</th>", head, flags=re.S)
    blob = re.search(r'id="data-container" data-jsonblob="([^"]*)"', text).group(1)
    return header, json.loads(html.unescape(blob))


def row(data: dict, nodeid: str) -> tuple[list[str], list[dict], str]:
    (test,) = data["tests"][nodeid]
    return test["resultsTableRow"], test["extras"], test["log"]


def cell_text(cell: str) -> str:
    return re.sub(r"<[^>]+>", "", cell.replace("<br>", "\n"))


def test_pytest_html_report_gains_flop_columns_and_breakdowns(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_h=SUITE.format(width=256))
    pytester.runpytest("--flop-update").assert_outcomes(passed=3, failed=1)
    pytester.makepyfile(test_h=SUITE.format(width=384))  # 256 -> 384: +50%
    result = pytester.runpytest("--html=report.html", "--self-contained-html")
    result.assert_outcomes(passed=2, failed=2)
    header, data = pytest_html_data(pytester.path / "report.html")
    assert [cell_text(h) for h in header[-4:]] == ["GFLOPs", "baseline GFLOPs", "change", "FLOP status"]
    assert all(len(t[0]["resultsTableRow"]) == len(header) for t in data["tests"].values())  # columns in line

    cells, extras, log = row(data, "test_h.py::test_grows")
    assert [cell_text(c) for c in cells[-4:]] == [
        fmt_gflops(gflops(384)), fmt_gflops(gflops(256)), fmt_delta(50.0), "regressed"]
    (extra,) = [e for e in extras if e["format_type"] == "html"]
    assert 'class="fb-breakdown"' in extra["content"]
    assert f"{4 * 64 * 256:,} &rarr; {4 * 64 * 384:,} MACs" in extra["content"]  # the change against the baseline
    assert f'data-name="matmul" data-macs="{4 * 64 * 384}"' in extra["content"]  # the category bar
    assert "FLOP regression" in log  # pytest-html shows the failure text in the log ...
    assert 'class="fb-msg"' not in extra["content"]  # ... so the extra does not repeat it

    cells, extras, _ = row(data, "test_h.py::test_over")
    assert cell_text(cells[-1]) == "over-budget" and cell_text(cells[-3]) == "-"
    assert "budget</dt><dd>0.00000100 GFLOPs" in extras[0]["content"]

    cells, extras, _ = row(data, "test_h.py::test_keys")  # one line per key
    assert cell_text(cells[-4]).splitlines() == [f"small: {fmt_gflops(gflops(8))}", f"big: {fmt_gflops(gflops(16))}"]
    assert cell_text(cells[-1]).splitlines() == ["small: ok", "big: ok"]
    assert extras[0]["content"].count('class="fb-breakdown"') == 2

    cells, extras, _ = row(data, "test_h.py::test_plain")  # measured nothing: empty cells, no extra
    assert [cell_text(c) for c in cells[-4:]] == ["", "", "", ""]
    assert not [e for e in extras if e["format_type"] == "html"]

    text = (pytester.path / "report.html").read_text(encoding="utf-8")
    assert "FLOP budget: 1 over-budget, 1 regressed, 0 new, 0 improved, 2 ok" in text  # the summary
    assert text.count(".fb-breakdown{") == 1  # the breakdown's CSS, once


def test_new_tests_show_their_warning_text_in_the_breakdown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_h=SUITE.format(width=256))
    pytester.runpytest("--html=report.html", "-k", "grows").assert_outcomes(passed=1)
    _, data = pytest_html_data(pytester.path / "report.html")
    cells, extras, _ = row(data, "test_h.py::test_grows")
    assert cell_text(cells[-1]) == "new"
    assert 'class="fb-msg"' in extras[0]["content"] and "Record it: pytest" in extras[0]["content"]


def test_collection_errors_keep_the_columns_in_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_h=SUITE.format(width=256), test_broken="def test_x(:\n")
    pytester.runpytest("--html=report.html")
    header, data = pytest_html_data(pytester.path / "report.html")
    (broken,) = data["tests"]["test_broken.py"]
    assert len(broken["resultsTableRow"]) == len(header)
    assert [cell_text(c) for c in broken["resultsTableRow"][-4:]] == ["", "", "", ""]


def test_pytest_html_under_xdist_gets_the_same_cells(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(test_h=SUITE.format(width=256))
    pytester.runpytest_subprocess("-p", "no:xdist", "--html=serial.html")
    pytester.runpytest_subprocess("-n", "2", "--html=parallel.html")
    _, serial = pytest_html_data(pytester.path / "serial.html")
    _, parallel = pytest_html_data(pytester.path / "parallel.html")
    for nodeid in serial["tests"]:
        s_cells, s_extras, _ = row(serial, nodeid)
        p_cells, p_extras, _ = row(parallel, nodeid)
        assert s_cells[-4:] == p_cells[-4:]
        html_extras = [[e["content"] for e in x if e["format_type"] == "html"] for x in (s_extras, p_extras)]
        assert html_extras[0] == html_extras[1]  # one breakdown each, built on the controller
    assert len(row(parallel, "test_h.py::test_grows")[1]) == 1


def test_disabled_pytest_html_leaves_the_plugin_working(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_h=SUITE.format(width=256))
    result = pytester.runpytest("-p", "no:html", "--flop-report-html=page.html", "--flop-report")
    result.assert_outcomes(passed=3, failed=1)
    assert "test_h.py::test_keys#big" in (pytester.path / "page.html").read_text(encoding="utf-8")
    result.stdout.fnmatch_lines(["*FLOP REPORT*"])


NO_PYTEST_HTML = """
import sys
sys.modules["pytest_html"] = None  # as if it were not installed: importing it raises ImportError
import pytest
code = pytest.main(sys.argv[1:], plugins=[])
assert "pytest_html" not in [m for m in sys.modules if sys.modules[m] is not None]
sys.exit(code)
"""


def test_without_pytest_html_installed(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_h=SUITE.format(width=256))
    (pytester.path / "run.py").write_text(textwrap.dedent(NO_PYTEST_HTML), encoding="utf-8")
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # entry points would load pytest_html
    done = subprocess.run(
        [sys.executable, "run.py", "-p", "pytest_flopbudget.gate.plugin", "--flop-report-html=page.html", "-q",
         "-p", "no:cacheprovider", "test_h.py"],
        cwd=pytester.path, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 1, done.stdout + done.stderr  # test_over fails; nothing else goes wrong
    assert "1 failed, 3 passed" in done.stdout
    assert "test_h.py::test_grows" in (pytester.path / "page.html").read_text(encoding="utf-8")


def test_importing_the_plugin_imports_neither_pytest_html_nor_torch() -> None:
    code = (
        "import sys, pytest_flopbudget.gate.plugin, pytest_flopbudget.gate.htmlplugin\n"
        "print(sorted(m for m in ('torch', 'pytest_html') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


MEMORY_SUITE = """
import pytest
import torch
from torch import nn

@pytest.mark.flop_budget(peak_mib=1)
def test_linear(flops):
    flops(nn.Linear(64, 128, device="meta"), torch.empty(4, 64, device="meta"))
"""


def test_pytest_html_shows_peak_memory_bytes_moved_and_the_time_estimate(pytester: pytest.Pytester) -> None:
    """Linear(64 -> 128) on (4, 64) float32: weights 4 * (64 * 128 + 128) = 33,280 bytes, input 1,024, output
    2,048: the peak holds all three (36,352 bytes at the addmm) and the call moves the same 36,352 bytes. On
    "round" (1 GFLOP/s, 1 GB/s): 65,536 FLOPs = 65,536 ns against 36,352 ns of traffic, compute-bound."""
    from pytest_flopbudget.deploy import devices

    pytester.makeconftest('from pytest_flopbudget import register_device\n'
                          'register_device("round", fp32=0.001, bandwidth=0.001, memory=1, replace=True)\n')
    pytester.makepyfile(test_m=MEMORY_SUITE)
    try:
        result = pytester.runpytest("--html=report.html", "--flop-missing=warn", "--flop-device=round")
    finally:
        devices._reset()
    result.assert_outcomes(passed=1)
    _, data = pytest_html_data(pytester.path / "report.html")
    _, extras, _ = row(data, "test_m.py::test_linear")
    (extra,) = [e["content"] for e in extras if e["format_type"] == "html"]
    peak = 4 * (64 * 128 + 128) + 4 * 4 * 64 + 4 * 4 * 128
    assert f"<dt>peak memory</dt><dd>{peak:,} bytes = {peak / 2**20:,.1f} MiB at &lt;root&gt; (aten::addmm)</dd>" in extra
    assert f"<dt>bytes moved</dt><dd>{peak:,} = {peak / 1e9:,.3f} GB ({2 * 4 * 64 * 128 / peak:,.1f} FLOPs per byte)</dd>" in extra
    assert "<dt>time on round</dt><dd>0.06554 ms (roofline lower bound), 100% compute-bound</dd>" in extra
