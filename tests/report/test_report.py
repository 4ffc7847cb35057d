"""Unit tests for the report renderers: Records built by hand, no torch, no pytester."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from pytest_flopbudget.report import (
    MARKER,
    annotations,
    counts_line,
    escape_property,
    fmt_delta,
    fmt_gflops,
    hints,
    json_report,
    markdown_report,
    short_name,
    sort_records,
    status_counts,
    terminal_table,
)
from pytest_flopbudget.results.result import STATUSES, Record

ENV = {"torch": "2.5.1", "counter": "torchprofile 0.1.0", "plugin": "0.1.0", "python": "3.11.9"}
G = 500_000_000  # MACs in one GFLOP


def rec(name: str, gflops: float, status: str = "ok", baseline: float | None = None, **kw) -> Record:
    nodeid = f"tests/test_m.py::{name}"
    base = None if baseline is None else round(baseline * G)
    return Record(id=nodeid, nodeid=nodeid, macs=round(gflops * G), status=status, baseline_macs=base, **kw)


def suite() -> list[Record]:
    return [
        rec("test_ok", 35.12, baseline=35.12, params=86_000_000),
        rec("test_small_reg", 1.03, "regressed", baseline=1.0),
        rec("test_big_reg", 3.91, "regressed", baseline=3.642, budget_gflops=4.0,
            location=("tests/test_m.py", 12), message="FLOP regression: 3.642 -> 3.910 GFLOPs (+7.4%)"),
        rec("test_over", 4.118, "over-budget", budget_gflops=3.5, location=("tests/test_m.py", 40),
            message="FLOP budget exceeded"),
        rec("test_new", 0.051, "new", budget_gflops=0.1, location=("tests/test_m.py", 30)),
        rec("test_x[a|b]", 0.98, "improved", baseline=1.0),
    ]


# ---------------------------------------------------------------- ordering and counts


def test_sort_by_severity_then_delta_then_id() -> None:
    records = suite() + [rec("test_a_ok", 1.0, baseline=1.0), rec("test_nobase_ok", 1.0)]
    order = [r.id.split("::")[1] for r in sort_records(records)]
    assert order == [
        "test_over", "test_big_reg", "test_small_reg", "test_new", "test_x[a|b]",
        "test_a_ok", "test_ok", "test_nobase_ok",
    ]


def test_sort_puts_infinite_delta_first_within_status() -> None:
    zero = rec("test_zero", 1.0, "regressed", baseline=0.0)
    small = rec("test_small", 1.1, "regressed", baseline=1.0)
    assert zero.delta_pct == float("inf")
    assert sort_records([small, zero]) == [zero, small]


def test_status_counts_has_every_status_in_order() -> None:
    counts = status_counts([rec("a", 1, "new"), rec("b", 1, "new"), rec("c", 1)])
    assert list(counts) == list(STATUSES)
    assert counts == {"over-budget": 0, "regressed": 0, "raised": 0, "new": 2, "improved": 0, "ok": 1}


def test_counts_line() -> None:
    assert counts_line(suite()) == "1 over-budget, 2 regressed, 1 new, 1 improved, 1 ok"
    assert counts_line([]) == "0 over-budget, 0 regressed, 0 new, 0 improved, 0 ok"


# ---------------------------------------------------------------- formatting


def test_number_formats() -> None:
    assert fmt_gflops(3.642) == "3.642"
    assert fmt_gflops(None) == "-"
    assert fmt_gflops(float("inf")) == "-"
    assert fmt_gflops(0.051) == "0.0510"  # 3 significant digits: a 3% change stays visible
    assert fmt_gflops(0.051 * 1.03) != fmt_gflops(0.051)
    assert fmt_delta(7.4) == "+7.4%"
    assert fmt_delta(-2.0) == "-2.0%"
    assert fmt_delta(0.0) == "0.0%"
    assert fmt_delta(-0.04) == "-0.04%"
    assert fmt_delta(100 * 22_282_240 / 155_087_544_320) == "+0.0144%"  # one hidden unit more per block of VAR-d16
    assert fmt_delta(None) == "-"
    assert fmt_delta(float("inf")) == "+inf%"


# ---------------------------------------------------------------- terminal


def test_terminal_table_columns_and_alignment() -> None:
    lines = terminal_table(suite())
    assert lines[0].split() == ["test", "GFLOPs", "published", "budget", "baseline", "change", "status"]
    assert lines[1].split() == ["GMACs", "GFLOPs", "GFLOPs"]  # the units, under published, budget, baseline
    for column, unit in (("published", "GMACs"), ("budget", "GFLOPs"), ("baseline", "GFLOPs")):
        end = lines[0].index(column) + len(column)
        assert lines[1][end - len(unit):end] == unit
    assert set(lines[2]) == {"-"}
    rows = lines[3:]
    assert len(rows) == 6
    assert rows[0].startswith("tests/test_m.py::test_over ")
    # numbers are right-aligned: each numeric column ends at the header's column end
    header = lines[0]
    for column in ("GFLOPs", "published", "budget", "baseline", "change"):
        end = header.index(column) + len(column)
        for row in rows:
            assert row[end - 1] != " ", (column, row)
            assert row[end] == " ", (column, row)
    row = next(r for r in rows if "test_big_reg" in r)
    assert row.split()[1:] == ["3.910", "-", "4.000", "3.642", "+7.4%", "regressed"]
    new_row = next(r for r in rows if "test_new" in r)
    assert new_row.split()[1:] == ["0.0510", "-", "0.100", "-", "-", "new"]


CATEGORIES = {"matmul": 1_500_000_000, "conv": 200_000_000, "attention": 300_000_000, "recurrent": 0,
              "norm": 40_000_000, "elementwise": 60_000_000}  # 2.1 G MACs in all, 2.0 G published


def conventions_record() -> Record:
    return rec("test_conv", 4.2, categories=dict(CATEGORIES))


def test_terminal_table_shows_the_published_convention() -> None:
    """GFLOPs are 2 x all MACs (4.2); published is the GMACs of matmul, conv and attention (2.0)."""
    row = terminal_table([conventions_record()])[3]
    assert row.split()[1:3] == ["4.200", "2.000"]


def test_json_and_markdown_give_macs_flops_and_published() -> None:
    test = json_report([conventions_record()], ENV, None)["tests"][0]
    assert (test["macs"], test["flops"], test["published_macs"]) == (2_100_000_000, 4_200_000_000, 2_000_000_000)
    assert test["categories"] == CATEGORIES
    md = markdown_report([conventions_record()], ENV, None)
    row = next(line for line in md.splitlines() if "test_conv`" in line)
    assert row.split(" | ")[1:3] == ["4.200", "2.000"]
    assert "Published GMACs = MACs of matmul, convolution and attention only" in md


def test_terminal_table_no_ansi_and_fits_width() -> None:
    long_id = "tests/models/test_very_long_module_name.py::TestClass::test_with_params[" + "x" * 80 + "]"
    records = [Record(id=long_id, nodeid=long_id, macs=G, status="ok"), *suite()]
    lines = terminal_table(records, width=80)
    assert all("\x1b" not in line for line in lines)
    assert all(len(line) <= 80 for line in lines)
    long_row = next(line for line in lines if "xxxx]" in line)
    assert long_row.startswith("...")  # shortened from the left, the end of the id kept
    assert "1.000" in long_row


def test_terminal_table_keeps_short_ids_whole() -> None:
    lines = terminal_table(suite(), width=200)
    assert any(line.startswith("tests/test_m.py::test_x[a|b] ") for line in lines)
    assert not any("..." in line for line in lines)
    assert terminal_table([]) == []


def test_hints_name_the_command() -> None:
    lines = hints(suite(), "flopbudget.toml")
    assert any(line.startswith("Regressed (2): if the growth is intended, accept it with pytest --flop-update") for line in lines)
    assert any("flopbudget.toml" in line for line in lines)
    assert any(line.startswith("Improved") and "lock" in line for line in lines)
    assert any(line.startswith("Over budget") for line in lines)
    assert hints([rec("a", 1.0, baseline=1.0)], "flopbudget.toml") == []
    only_improved = hints([rec("a", 0.9, "improved", baseline=1.0)], "f.toml")
    assert any("pytest --flop-update" in line and "lock" in line for line in only_improved)


# ---------------------------------------------------------------- JSON


def test_json_report_schema() -> None:
    data = json_report(suite(), ENV, "flopbudget.toml", extra={"obsolete": ["tests/test_old.py::x"], "schema": 99})
    assert data["schema"] == 1  # extra never replaces core keys
    assert data["obsolete"] == ["tests/test_old.py::x"]
    assert data["env"] == ENV
    assert data["baseline"] == "flopbudget.toml"
    assert data["summary"] == status_counts(suite())
    ids = [t["id"] for t in data["tests"]]
    assert ids == sorted(ids)
    keys = {"id", "nodeid", "key", "macs", "flops", "gflops", "params", "budget_gflops", "baseline_macs",
            "baseline_gflops", "delta_pct", "status", "unpriced", "top_modules", "published_macs", "categories"}
    for test in data["tests"]:
        assert keys <= set(test)
    big = next(t for t in data["tests"] if t["id"].endswith("test_big_reg"))
    assert big["flops"] == 2 * big["macs"]
    assert big["location"] == {"path": "tests/test_m.py", "line": 12}


def test_json_report_is_strict_json_with_inf_delta() -> None:
    records = [
        rec("test_zero", 1.0, "regressed", baseline=0.0, budget_gflops=float("inf")),
        rec("test_mods", 1.0, modules={"": 5, "layer1": 300, "layer2": 700, "unused": 0},
            unpriced={"aten::sdpa": 3}),
    ]
    data = json_report(records, ENV, None)
    text = json.dumps(data, allow_nan=False)
    zero = json.loads(text)["tests"][1]
    assert zero["delta_pct"] is None and zero["budget_gflops"] is None
    mods = data["tests"][0]
    assert [m["module"] for m in mods["top_modules"]] == ["layer2", "layer1", "<root>"]
    assert mods["top_modules"][0]["macs"] == 700
    assert mods["unpriced"] == {"aten::sdpa": 3}
    assert data["baseline"] is None


# ---------------------------------------------------------------- Markdown


def _section(md: str, start: str, end: str) -> str:
    return md[md.index(start):md.index(end, md.index(start))]


def test_markdown_marker_and_headline_counts() -> None:
    md = markdown_report(suite(), ENV, ENV)
    lines = md.splitlines()
    assert lines[0] == MARKER == "<!-- pytest-flopbudget report -->"
    assert "### ❌ FLOP budget: 2 regressed, 1 over budget" in lines
    assert "1 improved · 1 new · 1 unchanged" in lines
    assert "%" not in lines[2]  # counts, never an average


def test_markdown_clean_headline() -> None:
    md = markdown_report([rec("a", 1.0, baseline=1.0), rec("b", 1.0, "new")], ENV, None)
    assert "### ✅ FLOP budget: no regressions" in md
    assert "0 improved · 1 new · 1 unchanged" in md
    assert "pytest --flop-update" not in md  # guidance only when something regressed


def test_markdown_main_table_lists_changed_tests_only() -> None:
    md = markdown_report(suite(), ENV, None)
    main = _section(md, "| Test | Baseline GFLOPs", "```mermaid")
    assert "test_ok`" not in main
    for name in ("test_over", "test_big_reg", "test_small_reg", "test_new"):
        assert f"{name}`" in main
    assert main.index("test_over") < main.index("test_big_reg") < main.index("test_small_reg")
    row = next(line for line in main.splitlines() if "test_big_reg" in line)
    assert [c.strip() for c in row.strip("|").split("|")] == [
        "`tests/test_m.py::test_big_reg`", "3.642", "3.910", "+7.4%", "4.000", "❌ regressed"]


def test_markdown_escapes_pipe_in_ids() -> None:
    md = markdown_report(suite(), ENV, None)
    assert "`tests/test_m.py::test_x[a\\|b]`" in md
    for line in md.splitlines():
        if line.startswith("| ") and "test_x" in line:
            unescaped = re.sub(r"\\\|", "", line)
            assert unescaped.count("|") == line.count("|") - 1
            assert len(unescaped.strip("|").split("|")) in (6, 8)  # still the right number of cells (changed table, all-tests table)


def test_markdown_backticks_in_id() -> None:
    weird = Record(id="t.py::test_`q`", nodeid="t.py::test_`q`", macs=G, status="new")
    md = markdown_report([weird], ENV, None)
    assert "`` t.py::test_`q` ``" in md  # CommonMark strips one space each side


def test_markdown_details_lists_all_tests() -> None:
    md = markdown_report(suite(), ENV, None)
    details = _section(md, "<details>", "</details>")
    assert "<summary>All 6 measurements</summary>" in details
    for record in suite():
        assert record.id.replace("|", "\\|") in details
    ok_row = next(line for line in details.splitlines() if "test_ok`" in line)
    assert "86.00" in ok_row  # params in millions
    assert "| Test | GFLOPs | Published GMACs | Params (M) | Budget GFLOPs | Baseline GFLOPs | Change | Status |" in details


def test_markdown_mermaid_only_with_changes() -> None:
    md = markdown_report(suite(), ENV, None)
    chart = _section(md, "```mermaid", "\n```\n")
    assert "xychart-beta" in chart
    labels = re.search(r"x-axis \[(.*)\]", chart).group(1)
    assert labels.count('"') == 2 * 5  # five changed tests, each label quoted
    assert all(ch not in labels for ch in "[]|#`")
    assert chart.count("    bar [") == 1
    assert chart.count("    line [") == 2  # baseline and budget
    clean = markdown_report([rec("a", 1.0, baseline=1.0)], ENV, None)
    assert "mermaid" not in clean


def test_mermaid_labels_are_safe_and_series_omitted_when_empty() -> None:
    assert short_name('tests/t.py::test_x[a|b"c]#key') == "test_x(a_b_c) key"
    assert len(short_name("t.py::test_" + "y" * 100)) <= 30
    records = [rec("test_a", 1.5, "new"), rec("test_a2", 2.0, "new")]
    md = markdown_report(records, ENV, None)
    chart = _section(md, "```mermaid", "\n```\n")
    assert "line [" not in chart  # neither a baseline nor a budget anywhere
    labels = re.search(r"x-axis \[(.*)\]", chart).group(1)
    assert all(ch not in labels for ch in "[]|#`")


def test_mermaid_limits_the_number_of_tests() -> None:
    records = [rec(f"test_{i:02d}", 1.0 + i, "regressed", baseline=1.0) for i in range(20)]
    md = markdown_report(records, ENV, None)
    labels = re.search(r"x-axis \[(.*)\]", md).group(1)
    assert labels.count('"') == 2 * 15
    assert "showing 15 of 20" in md


def test_markdown_env_mismatch_warning() -> None:
    old = dict(ENV, torch="2.4.0")
    md = markdown_report(suite(), ENV, old)
    assert "⚠️ baseline recorded with torch 2.4.0, this run used torch 2.5.1: counts may differ" in md
    assert "torch 2.5.1" in md and "python 3.11.9" in md
    assert "baseline recorded with" not in markdown_report(suite(), ENV, ENV)
    assert "baseline recorded with" not in markdown_report(suite(), ENV, None)
    assert "baseline recorded with" not in markdown_report(suite(), ENV, dict(ENV, python="3.12.0"))
    counter = markdown_report(suite(), ENV, dict(ENV, counter="torchprofile 0.0.4"))
    assert "baseline recorded with counter torchprofile 0.0.4" in counter


def test_markdown_order_and_update_command() -> None:
    md = markdown_report(suite(), ENV, dict(ENV, torch="2.4.0"), command="pytest tests --flop-update")
    positions = [md.index(s) for s in (MARKER, "### ", "| Test | Baseline", "```mermaid", "<details>",
                                       "**Environment:**", "baseline recorded", "pytest tests --flop-update")]
    assert positions == sorted(positions)
    assert "pytest --flop-update" in markdown_report(suite(), ENV, None)


def test_markdown_is_deterministic() -> None:
    assert markdown_report(suite(), ENV, None) == markdown_report(list(reversed(suite())), ENV, None)


def test_markdown_empty_run() -> None:
    md = markdown_report([], ENV, None)
    assert md.startswith(MARKER)
    assert "no measurements" in md and "mermaid" not in md and "<details>" not in md


# ---------------------------------------------------------------- annotations


def test_annotations_levels_and_locations() -> None:
    lines = annotations(suite())
    assert lines[0].startswith("::error file=tests/test_m.py,line=40,title=FLOP budget::")
    assert lines[1].startswith("::error file=tests/test_m.py,line=12,title=FLOP budget::")
    assert sum(line.startswith("::error") for line in lines) == 3
    assert sum(line.startswith("::warning file=tests/test_m.py,line=30,") for line in lines) == 1
    no_location = next(line for line in lines if "test_small_reg" in line)
    assert no_location.startswith("::error title=FLOP budget::")
    assert not any("test_ok" in line or "test_x" in line for line in lines)


def test_annotations_escaping() -> None:
    record = rec("test_e", 2.0, "regressed", baseline=1.0, location=("C:\\dir,a/t.py", 7),
                 message="up 100%\r\nsee: log, please")
    (line,) = annotations([record])
    assert line == (
        "::error file=C%3A\\dir%2Ca/t.py,line=7,title=FLOP budget::"
        "tests/test_m.py::test_e: up 100%25%0D%0Asee: log, please"
    )
    assert "\n" not in line
    assert escape_property("a%b:c,d\n") == "a%25b%3Ac%2Cd%0A"


# ---------------------------------------------------------------- purity


def test_report_imports_neither_torch_nor_pytest() -> None:
    code = (
        "import sys, pytest_flopbudget.report\n"
        "bad = [m for m in ('torch', 'pytest', '_pytest') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_env_values_render_plainly() -> None:
    env = dict(ENV, torch="2.13.0+cpu")
    md = markdown_report(suite(), env, dict(ENV, torch="2.12.1+cu121"))
    assert "baseline recorded with torch 2.12.1+cu121, this run used torch 2.13.0+cpu" in md


def test_module_totals_fold_indices_cut_depth_and_rank() -> None:
    from pytest_flopbudget import FlopResult

    result = FlopResult(
        macs=0,
        by_module={"blocks.0.ffn.fc1": 10, "blocks.1.ffn.fc1": 10, "": 5, "enc.a.b.c.d": 3, "enc.a.b.c.e": 4, "idle": 0},
    )
    assert result.module_totals(4) == {"<root>": 5, "blocks.*.ffn.fc1": 20, "enc.a.b.c": 7}
    assert result.top_modules(2, 4) == [("blocks.*.ffn.fc1", 20), ("enc.a.b.c", 7)]
    # by default the whole path: the two leaves under enc.a.b.c stay apart
    assert result.module_totals() == {"<root>": 5, "blocks.*.ffn.fc1": 20, "enc.a.b.c.d": 3, "enc.a.b.c.e": 4}
    assert result.module_totals(2) == {"<root>": 5, "blocks.*": 20, "enc.a": 7}
