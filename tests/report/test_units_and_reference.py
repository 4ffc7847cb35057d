"""One unit per column name in every format, and what the charts compare with when a run has a base.

The units case: ``nn.Linear(1000, 1000)`` on a (10, 1000) input is 10 * 1000 * 1000 = 1e7 MACs,
all of them matmul, so 2e7 FLOPs = 0.0200 GFLOPs and a published convention of 1e7 MACs = 0.0100 GMACs.
"""

from __future__ import annotations

import json
import re

from pytest_flopbudget.report import BaseSummary, html_report, json_report, markdown_report, terminal_table
from pytest_flopbudget.report import html as page
from pytest_flopbudget.report.markdown import mermaid_chart
from pytest_flopbudget.report.terminal import hints
from pytest_flopbudget.results.result import Record, module_deltas, same_depth

LINEAR_MACS = 10 * 1000 * 1000
ID = "tests/test_units.py::test_linear"


def linear_record() -> Record:
    return Record(id=ID, nodeid=ID, macs=LINEAR_MACS, status="ok", categories={"matmul": LINEAR_MACS}, params=1000 * 1000 + 1000)


def test_the_same_published_number_under_the_same_unit_in_every_format() -> None:
    record = linear_record()
    # terminal: names, then units; the published cell sits under GMACs
    lines = terminal_table([record])
    names, units, row = lines[0], lines[1], lines[3]
    end = names.index("published") + len("published")
    assert units[end - len("GMACs"):end] == "GMACs"
    assert row[end - len("0.0100"):end] == "0.0100"
    assert row.split()[1] == "0.0200"  # GFLOPs = 2 x MACs
    # Markdown: the column header names the unit, the cell is the same number
    md = markdown_report([record], {}, None)
    header = next(line for line in md.splitlines() if line.startswith("| Test | GFLOPs | Published GMACs"))
    cells = next(line for line in md.splitlines() if line.startswith(f"| `{ID}` | 0.0200"))
    column = header.split(" | ").index("Published GMACs")
    assert cells.split(" | ")[column] == "0.0100"
    # HTML: the all-measurements table and the facts say GMACs with the same number
    text = html_report([record], {})
    heads = re.findall(r"<th>([^<]*)</th>", text)
    assert heads[:7] == ["test", "GFLOPs", "published GMACs", "params (M)", "budget GFLOPs", "baseline GFLOPs", "change"]
    row_cells = re.findall(r"<td>([^<]*)</td>", re.search(r"test_linear</a></td>(.*?)</tr>", text).group(1))
    assert row_cells[:2] == ["0.0200", "0.0100"]
    assert "<dt>published convention</dt><dd>0.0100 GMACs</dd>" in text
    assert "0.0100 GMACs (100.0%)" in page.breakdown(record)
    # JSON: the key names the unit
    test = json.loads(json.dumps(json_report([record], {}, None)))["tests"][0]
    assert test["published_macs"] == LINEAR_MACS
    assert test["published_gmacs"] == LINEAR_MACS / 1e9
    assert test["gflops"] == 2 * LINEAR_MACS / 1e9


def test_every_count_column_names_its_unit() -> None:
    record = linear_record()
    counted = {"GFLOPs", "published", "budget", "baseline", "base"}
    md = markdown_report([record], {}, None)
    for line in md.splitlines():
        if line.startswith("| Test |"):
            for head in line.strip("|").split(" | "):
                if any(word.lower() in head.lower() for word in counted):
                    assert head.strip().endswith(("GFLOPs", "GMACs")), head
    text = html_report([record], {})
    for head in re.findall(r"<th>([^<]*)</th>", text):
        if any(word.lower() in head.lower() for word in counted) and head != "vs base":
            assert head.endswith(("GFLOPs", "GMACs")), head


M = 1_000_000


def base_summary() -> BaseSummary:
    return BaseSummary(label="main", source="main:flopbudget.toml", exists=True, baseline_name="flopbudget.toml")


def accepted_raise() -> Record:
    """A training step raised against the base and accepted in the local baseline (status ok)."""
    m = M
    return Record(
        id="t.py::step", nodeid="t.py::step", macs=1200 * m, status="ok", baseline_macs=1200 * m,
        phases={"forward": 400 * m, "backward": 700 * m, "optimizer": 100 * m},
        baseline_phases={"forward": 400 * m, "backward": 700 * m, "optimizer": 100 * m},
        base="main", base_macs=1000 * m, base_phases={"forward": 300 * m, "backward": 600 * m, "optimizer": 100 * m},
    )


def test_markdown_chart_and_phases_compare_with_the_base() -> None:
    record = accepted_raise()
    md = markdown_report([record], {}, None, base=base_summary())
    chart = md.split("```mermaid", 1)[1].split("```", 1)[0]
    assert "bar [2.4]" in chart  # 1.2e9 MACs = 2.4 GFLOPs
    assert "line [2]" in chart  # the base's 1e9 MACs, not the baseline's 1.2e9
    assert "line 1: base main" in md
    row = next(line for line in md.splitlines() if line.startswith("| `t.py::step` | 0.800"))
    assert "(+33.3%)" in row and "(+16.7%)" in row  # forward 300 -> 400, backward 600 -> 700
    # without a base the chart is of the tests changed against the baseline, with the baseline as line
    plain = Record(id="t.py::b", nodeid="t.py::b", macs=1200 * M, status="regressed", baseline_macs=1000 * M)
    assert "line 1: baseline" in "\n".join(mermaid_chart([plain]))


def test_html_bars_and_phases_compare_with_the_base() -> None:
    record = accepted_raise()
    text = html_report([record], {}, base=base_summary())
    assert 'class="fb-base"' in text and f'data-macs="{1000 * M}"' in text
    assert 'class="fb-baseline"' not in text
    assert "against its base main and budget" in text
    assert "+33.3% against the base main" in text
    plain = html_report([Record(id="t.py::b", nodeid="t.py::b", macs=1200 * M, status="regressed", baseline_macs=1000 * M)], {})
    assert 'class="fb-baseline"' in plain and f'data-macs="{1000 * M}"' in plain


def test_module_tables_of_different_depths_compare_at_the_shallower_one() -> None:
    whole = {"h.*.mlp.c_fc": 40, "h.*.mlp.c_proj": 40, "h.*.attn.c_attn": 30, "lm_head": 50}
    old = {"h.*.mlp": 70, "h.*.attn": 30, "lm_head": 50}  # a baseline recorded at depth 3
    mine, theirs = same_depth(whole, old)
    assert mine == {"h.*.mlp": 80, "h.*.attn": 30, "lm_head": 50} and theirs == old
    assert module_deltas(whole, old) == [("h.*.mlp", 10)]  # not every path gone and new
    phased = {"forward/h.*.mlp.c_fc": 5, "backward/h.*.mlp.c_fc": 7, "optimizer/<root>": 3}
    assert module_deltas(phased, {"forward/h.*.mlp": 5, "backward/h.*.mlp": 6, "optimizer/<root>": 3}) == [("backward/h.*.mlp", 1)]


def test_hints_after_an_update_leave_out_what_was_recorded() -> None:
    records = [
        Record(id="a", nodeid="a", macs=1, status="new"),
        Record(id="b", nodeid="b", macs=2, status="regressed", baseline_macs=1),
        Record(id="c", nodeid="c", macs=9, status="over-budget", budget_gflops=1e-9),
    ]
    before = hints(records, "flopbudget.toml")
    assert any(line.startswith("New (1)") for line in before)
    after = hints(records, "flopbudget.toml", updated=True)
    assert [line.split(" ", 1)[0] for line in after] == ["Over"]
