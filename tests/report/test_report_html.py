"""The HTML report (--flop-report-html): charts proportional to their values, escaping, large runs,
determinism, nothing fetched; and the option end to end (ini twin, validation, xdist).

Records are built by hand: G MACs are one GFLOP (2 FLOPs a MAC). A Linear(64 -> w) on (4, 64)
costs 4 * 64 * w MACs.
"""

from __future__ import annotations

import random
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from pytest_flopbudget.report import html as page
from pytest_flopbudget.report import html_report
from pytest_flopbudget.report.common import BaseSummary, base_headline
from pytest_flopbudget.report.html import esc
from pytest_flopbudget.results.result import STATUSES, Record

G = 500_000_000  # MACs in one GFLOP
ENV = {"python": "3.11.9", "pytest-flopbudget": "0.1.0", "counter": "torchprofile", "torch": "2.13.0"}
TRICKY = "tests/test_m.py::test_x[<b>&\"quoted\"&'single'</b>]"
TRICKY_MODULE = "blocks.*.<attn>&\"proj\""


def rec(name: str, gflops: float, status: str = "ok", baseline: float | None = None, **kw) -> Record:
    nodeid = name if "::" in name else f"tests/test_m.py::{name}"
    base = None if baseline is None else round(baseline * G)
    return Record(id=nodeid, nodeid=nodeid, macs=round(gflops * G), status=status, baseline_macs=base, **kw)


def suite() -> list[Record]:
    return [
        rec("test_ok", 2.0, baseline=2.0, budget_gflops=2.5),
        rec("test_grows", 3.0, "regressed", baseline=2.4, budget_gflops=4.0,
            modules={"encoder": 1_000_000_000, "head": 500_000_000},
            baseline_modules={"encoder": 1_000_000_000, "head": 200_000_000},
            categories={"matmul": 1_200_000_000, "attention": 200_000_000, "conv": 0, "recurrent": 0,
                        "norm": 40_000_000, "elementwise": 60_000_000},
            message="FLOP regression: 2.40 -> 3.00 GFLOPs (+25.0%)"),
        rec("test_over", 5.0, "over-budget", budget_gflops=4.0),
        rec("test_new", 0.5, "new"),
        rec("test_less", 1.0, "improved", baseline=1.25),
        rec(TRICKY, 1.5, modules={TRICKY_MODULE: 750_000_000}, message="a <b> & \"c\""),
    ]


def svgs(text: str, cls: str) -> list[ET.Element]:
    """Every ``<svg class="cls">`` of the page, parsed as XML (the charts are well-formed)."""
    found = re.findall(rf'<svg class="{cls}".*?</svg>', text, flags=re.S)
    return [ET.fromstring(s) for s in found]


class Text(HTMLParser):
    """The text a browser shows (entities decoded), and every href/src/id of the page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.refs: list[tuple[str, str, str]] = []
        self.ids: set[str] = set()
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("href", "src", "xlink:href", "action", "srcset", "poster", "data"):
                self.refs.append((tag, name, value or ""))
            if name == "id":
                self.ids.add(value)

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def parse(text: str) -> Text:
    parser = Text()
    parser.feed(text)
    return parser


# ---------------------------------------------------------------- charts: widths proportional to values


def test_overview_bars_baselines_and_budgets_are_proportional_to_their_values() -> None:
    records = suite()
    text = html_report(records, ENV)
    charts = svgs(text, "fb-chart")
    assert len(charts) == 5  # one chart per status present (all but raised), each on the same scale
    top = 5.0 * 1.05  # largest value 5 GFLOPs -> the axis ends at the next round number, 6
    assert page._scale_top(records) == 6.0 > top
    px_per_gflop = page.PLOT_W / 6.0
    seen = {}
    for chart in charts:
        for row in chart.iter("g"):
            rid = row.get("data-id")
            (bar,) = [e for e in row if e.get("class") == "fb-bar"]
            macs = int(bar.get("data-macs"))
            assert float(bar.get("x")) == page.LABEL_W
            # width = GFLOPs * px per GFLOP, rounded to 0.01 px
            assert float(bar.get("width")) == pytest.approx(2 * macs / 1e9 * px_per_gflop, abs=0.005)
            for line in row.iter("line"):
                x = float(line.get("x1")) - page.LABEL_W
                if line.get("class") == "fb-baseline":
                    assert x == pytest.approx(2 * int(line.get("data-macs")) / 1e9 * px_per_gflop, abs=0.005)
                else:
                    assert line.get("class") == "fb-budget"
                    assert x == pytest.approx(float(line.get("data-gflops")) * px_per_gflop, abs=0.005)
            seen[rid] = float(bar.get("width"))
    assert set(seen) == {r.id for r in records}
    # ratios between tests: 5 GFLOPs is ten times 0.5 GFLOPs, 2 is twice 1
    assert seen["tests/test_m.py::test_over"] / seen["tests/test_m.py::test_new"] == pytest.approx(10, rel=1e-4)
    assert seen["tests/test_m.py::test_ok"] / seen["tests/test_m.py::test_less"] == pytest.approx(2, rel=1e-4)


def test_groups_follow_severity_and_rows_the_change() -> None:
    records = suite() + [rec("test_reg_small", 2.1, "regressed", baseline=2.0)]
    text = html_report(records, ENV)
    groups = re.findall(r'<details class="fb-group" data-status="([^"]+)"', text)
    assert groups == [s for s in STATUSES if s != "raised"]  # only the statuses present, most severe first
    (regressed,) = [c for c in svgs(text, "fb-chart") if c.find("g").get("data-status") == "regressed"]
    assert [g.get("data-id") for g in regressed.iter("g")] == [
        "tests/test_m.py::test_grows", "tests/test_m.py::test_reg_small"]  # +25% before +5%


def test_stacked_bars_split_the_total_by_category_and_module() -> None:
    grows = suite()[1]
    text = page.breakdown(grows)
    cats, modules = svgs(text, "fb-stack")
    segments = [(s.get("data-name"), int(s.get("data-macs")), float(s.get("width"))) for s in cats.iter("rect")
                if s.get("class") == "fb-seg"]
    assert [name for name, _, _ in segments] == ["matmul", "attention", "norm", "elementwise"]  # zeros left out
    total = 1_500_000_000
    for _, macs, width in segments:
        assert width == pytest.approx(page.STACK_W * macs / total, abs=0.005)
    xs = [float(s.get("x")) for s in cats.iter("rect") if s.get("class") == "fb-seg"]
    assert xs[1] == pytest.approx(segments[0][2], abs=0.01)  # each segment starts where the last ended
    assert sum(w for _, _, w in segments) == pytest.approx(page.STACK_W, abs=0.02)
    mods = [(s.get("data-name"), int(s.get("data-macs"))) for s in modules.iter("rect") if s.get("class") == "fb-seg"]
    assert mods == [("encoder", 1_000_000_000), ("head", 500_000_000)]
    # published convention: matmul + attention = 1.4e9 MACs = 1.4 GMACs, 93.3% of 1.5e9
    assert "is 1.400 GMACs (93.3%)" in text


def test_module_parts_keep_the_largest_and_sum_the_rest() -> None:
    modules = {f"blocks.{i}": (i + 1) * 1000 for i in range(12)}  # 1000 ... 12000, sum 78000
    record = rec("test_many", 0, modules=modules)
    record.macs = 78000 + 500  # 500 MACs outside any module path
    parts = page.module_parts(record)
    assert [name for name, _, _ in parts[:page.TOP_SEGMENTS]] == [f"blocks.{i}" for i in range(11, 3, -1)]
    name, rest, _ = parts[-1]
    assert name == "4 other module(s)" and rest == 1000 + 2000 + 3000 + 4000 + 500
    assert sum(macs for _, macs, _ in parts) == record.macs


def test_changes_against_the_baseline_module_by_module() -> None:
    grows = suite()[1]
    assert page.module_changes(grows.modules, grows.baseline_modules) == [("head", 200_000_000, 500_000_000)]
    text = page.breakdown(grows)
    assert "1,200,000,000 &rarr; 1,500,000,000 MACs (+300,000,000, +25.0%)" in text
    row = re.search(r"<tr><td><code>head</code></td>(.*?)</tr>", text).group(1)
    assert "<td>200,000,000</td><td>500,000,000</td><td>+300,000,000</td><td>+150.0%</td>" in row
    (bar,) = svgs(row, "fb-diff")
    (rect,) = bar.iter("rect")
    assert float(rect.get("x")) == page.DIFF_W / 2 and float(rect.get("width")) == page.DIFF_W / 2  # the largest change
    shrink = rec("test_s", 1, "improved", 1.5, modules={"a": 100, "b": 300}, baseline_modules={"a": 300, "b": 400})
    bars = svgs(page.breakdown(shrink), "fb-diff")
    widths = [float(next(b.iter("rect")).get("width")) for b in bars]
    assert widths == [page.DIFF_W / 2, page.DIFF_W / 4]  # -200 then -100 MACs: half of it
    assert [float(next(b.iter("rect")).get("x")) for b in bars] == [0, page.DIFF_W / 4]  # left of the middle
    assert "No baseline entry yet." in page.breakdown(suite()[3])


def test_a_training_step_shows_its_phases_and_their_change() -> None:
    step = rec("test_step", 3.0, "regressed", 2.5, phases={"forward": 500_000_000, "backward": 900_000_000, "optimizer": 100_000_000},
               baseline_phases={"backward": 650_000_000, "forward": 500_000_000, "optimizer": 100_000_000},
               modules={"backward/blocks.*": 900_000_000}, baseline_modules={"backward/blocks.*": 650_000_000})
    text = page.breakdown(step)
    assert "<dt>forward (training step)</dt><dd>500,000,000 MACs = 1.000 GFLOPs</dd>" in text
    assert "<dt>backward (training step)</dt><dd>900,000,000 MACs = 1.800 GFLOPs (+250,000,000 MACs, +38.5% against the baseline)</dd>" in text
    assert "<code>backward/blocks.*</code>" in text  # the module that grew, in its phase


# ---------------------------------------------------------------- escaping


def test_test_ids_module_paths_and_messages_are_escaped() -> None:
    text = html_report(suite(), ENV)
    for raw in (TRICKY, TRICKY_MODULE, 'a <b> & "c"'):
        assert raw not in text
    assert "<b>&" not in text and "</b>]" not in text  # the markup in the id is not markup on the page
    assert "test_x[&lt;b&gt;&amp;&quot;quoted&quot;&amp;&#x27;single&#x27;&lt;/b&gt;]" in text
    assert "blocks.*.&lt;attn&gt;&amp;&quot;proj&quot;" in text
    assert 'data-id="tests/test_m.py::test_x[&lt;b&gt;&amp;&quot;quoted&quot;' in text  # inside an attribute too
    shown = "".join(parse(text).parts)
    assert TRICKY in shown and TRICKY_MODULE in shown  # a browser shows the ids as they are
    for chart in svgs(text, "fb-chart") + svgs(text, "fb-stack"):
        assert chart is not None  # the escaped charts still parse as XML


def test_environment_values_and_the_command_are_escaped() -> None:
    text = html_report(suite(), {"torch": "2.13<dev>&"}, {"torch": "2.12"}, 'pytest "a<b>" --flop-update')
    assert "2.13&lt;dev&gt;&amp;" in text and "2.13<dev>" not in text
    assert "The baseline was recorded with torch 2.12; this run used torch 2.13&lt;dev&gt;&amp;" in text
    assert "pytest &quot;a&lt;b&gt;&quot; --flop-update" in text


# ---------------------------------------------------------------- nothing fetched, no script


def test_page_is_self_contained_without_script() -> None:
    text = html_report(suite(), ENV, {"torch": "2.12.0"}, "pytest --flop-update")
    parsed = parse(text)
    assert "script" not in parsed.tags and "link" not in parsed.tags and "iframe" not in parsed.tags
    assert "img" not in parsed.tags and "object" not in parsed.tags and "embed" not in parsed.tags
    for tag, attr, value in parsed.refs:
        assert attr == "href" and value.startswith("#"), (tag, attr, value)  # only links inside the page
        assert value[1:] in parsed.ids, value
    for needle in ("http:", "https:", "//", "url(", "@import", "@font-face", "xmlns", "javascript:"):
        assert needle not in text, needle
    assert re.search(r"<style>.*</style>", text, flags=re.S)


# ---------------------------------------------------------------- many tests stay readable


def test_three_hundred_tests_get_one_fixed_row_each() -> None:
    rng = random.Random(7)
    records = [
        rec(f"tests/test_suite_{i % 7}.py::test_model_forward_with_a_rather_long_name[config-{i:03d}]",
            rng.uniform(0.1, 50.0), rng.choices(STATUSES, weights=[10 if s == "ok" else 1 for s in STATUSES])[0], rng.choice([None, rng.uniform(0.1, 50.0)]),
            budget_gflops=rng.choice([None, 60.0]))
        for i in range(300)
    ]
    text = html_report(records, ENV)
    assert page.FONT < page.ROW
    rows = 0
    for chart in svgs(text, "fb-chart"):
        labels = [t for t in chart.iter("text") if t.get("class") == "fb-label"]
        ys = [float(t.get("y")) for t in labels]
        assert ys == [page.AXIS_H + 15 + i * page.ROW for i in range(len(ys))]  # one row each, no overlap
        assert float(chart.get("height")) >= ys[-1] + page.ROW - 15
        for t in labels:
            assert len(t.text) <= page.LABEL_CHARS  # fits the label column (long ids keep their end)
            assert t.text.endswith("]")
        bars = [e for e in chart.iter("rect") if e.get("class") == "fb-bar"]
        assert all(float(b.get("width")) <= page.PLOT_W for b in bars)  # no bar runs into the figures
        rows += len(labels)
    assert rows == 300
    assert len(set(re.findall(r'<details class="fb-test" id="(t\d+)"', text))) == 300
    # the ok group of a large run starts folded; the others are open
    assert re.search(r'<details class="fb-group" data-status="ok">', text)
    assert re.search(r'<details class="fb-group" data-status="regressed" open>', text)


# ---------------------------------------------------------------- deterministic


def test_same_records_give_the_same_bytes_in_any_order() -> None:
    records = suite()
    first = html_report(records, ENV, {"torch": "2.12.0"}, "pytest --flop-update")
    shuffled = records[:]
    random.Random(3).shuffle(shuffled)
    assert html_report(shuffled, ENV, {"torch": "2.12.0"}, "pytest --flop-update") == first
    assert not re.search(r"\d{4}-\d{2}-\d{2}|\d{2}:\d{2}:\d{2}", first)  # no dates or times
    assert html_report([], ENV).count("FLOP budget: no measurements") == 2  # title and headline


def test_base_branch_comparison_shows_when_there_is_one() -> None:
    records = suite()
    assert ">vs base<" not in html_report(records, ENV) and not re.search("Against the base[ :]", html_report(records, ENV))
    for r in records:
        r.base = "origin/main"
    ok, grows = records[0], records[1]
    ok.base_macs = round(1.6 * G)  # 2.0 GFLOPs now, 1.6 in the base: +25%
    grows.base_macs, grows.base_modules = 1_400_000_000, {"encoder": 1_000_000_000, "head": 400_000_000}
    base = BaseSummary(label="origin/main", source="origin/main:flopbudget.toml", exists=True,
                       baseline_name="flopbudget.toml", gone=("tests/test_m.py::test_<gone>",))
    text = html_report(records, ENV, base=base)
    assert "<h2>Against the base: origin/main</h2>" in text
    assert esc(base_headline(records, base)) in text
    assert "<li><code>tests/test_m.py::test_&lt;gone&gt;</code></li>" in text
    assert "<th>base GFLOPs</th><th>vs base</th>" in text
    assert "<td>1.600</td><td>+25.0%</td>" in re.search(r"test_ok</a></td>(.*?)</tr>", text).group(1)
    assert "<td>-</td><td>new</td>" in re.search(r"test_new</a></td>(.*?)</tr>", text).group(1)
    assert "800,000,000 MACs = 1.600 GFLOPs (+25.0% on this branch)" in text
    section = page.breakdown(grows)
    assert "<h4>Against the base (origin/main)</h4>" in section
    assert "1,400,000,000 &rarr; 1,500,000,000 MACs (+100,000,000, +7.1%)" in section  # 1.5e9 / 1.4e9 - 1
    assert "<tr><td><code>head</code></td><td>400,000,000</td><td>500,000,000</td><td>+100,000,000</td><td>+25.0%</td>" in section
    assert "Not in the base: new since it." in page.breakdown(records[3])


def test_raised_tests_get_their_color_and_a_card_only_when_seen() -> None:
    assert ">raised</div>" not in html_report(suite(), ENV)
    raised = rec("test_raised", 2.0, "raised", baseline=2.0, base="origin/main", base_macs=round(1.5 * G))
    text = html_report([*suite(), raised], ENV)
    assert f'data-status="raised" style="background:{page.STATUS_COLOR["raised"]}"><b>1</b>raised</div>' in text
    assert "FLOP budget: 1 regressed, 1 raised, 1 over budget" in text


# ---------------------------------------------------------------- the option, end to end

SUITE = """
import pytest
import torch
from torch import nn


def linear(width):
    return nn.Linear(64, width, device="meta"), torch.empty(4, 64, device="meta")


@pytest.mark.parametrize("width", [8, 16])
def test_width(flops, width):
    flops(*linear(width))


@pytest.mark.flop_budget(gflops=1e-6)
def test_over(flops):
    flops(*linear(512))   # 4*64*512 = 131,072 MACs = 0.000262 GFLOPs > 0.000001
"""


def test_option_writes_the_page(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_h=SUITE)
    (pytester.path / "out").mkdir()
    result = pytester.runpytest("--flop-report-html=out/flops.html")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([f"flopbudget: HTML report written to {pytester.path / 'out' / 'flops.html'}"])
    text = (pytester.path / "out" / "flops.html").read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert "FLOP budget: 1 over budget" in text
    for width in (8, 16):
        assert f'data-id="test_h.py::test_width[{width}]"' in text
        assert f'data-macs="{4 * 64 * width}"' in text
    assert 'data-macs="131072"' in text
    assert [p.name for p in (pytester.path / "out").iterdir()] == ["flops.html"]  # no temporary left behind


def test_ini_twin_and_bad_paths(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_h=SUITE)
    pytester.makeini("[pytest]\nflopbudget_report_html = page.html\n")
    pytester.runpytest("-k", "width").assert_outcomes(passed=2)
    assert "test_h.py::test_width[16]" in (pytester.path / "page.html").read_text(encoding="utf-8")
    result = pytester.runpytest("--flop-report-html=missing/page.html")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*pytest-flopbudget: --flop-report-html *page.html: directory *missing does not exist; create it first*"])
    result = pytester.runpytest("--flop-report-html=.")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*pytest-flopbudget: --flop-report-html * is a directory; give a file path*"])
    help_text = pytester.runpytest("--help").stdout.str()
    assert "--flop-report-html=PATH" in help_text and "flopbudget_report_html" in help_text


def test_serial_and_xdist_pages_are_byte_identical(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(test_h=SUITE)
    pytester.runpytest_subprocess("-p", "no:xdist", "--flop-report-html=serial.html").assert_outcomes(passed=2, failed=1)
    pytester.runpytest_subprocess("-n", "2", "--flop-report-html=parallel.html").assert_outcomes(passed=2, failed=1)
    serial = (pytester.path / "serial.html").read_bytes()
    assert serial == (pytester.path / "parallel.html").read_bytes()  # only the controller wrote it
    pytester.runpytest_subprocess("-p", "no:xdist", "--flop-report-html=again.html")
    assert (pytester.path / "again.html").read_bytes() == serial
