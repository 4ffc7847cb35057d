"""The HTML report (``--flop-report-html``): one self-contained page with inline SVG charts.

Nothing on the page is fetched: no scripts, stylesheets, fonts or images from
anywhere, not even an XML namespace URL (inline SVG in HTML needs none). Nothing
needs JavaScript either: sections fold with ``<details>``, chart rows link to
their test's section with ``#`` anchors, and tooltips are SVG ``<title>``s.
Every test id, module path and message is HTML-escaped. The same records give a
byte-identical page (no timestamps, every mapping sorted).

The page, top to bottom: the verdict and the count per status; every measured
test as a horizontal bar against its baseline (a black tick) and its budget (a
red dashed line), grouped by status, most severe first, one fixed-height row per
test so hundreds of tests stay readable; a table of all measurements; per test
where its compute goes (categories of the published convention and modules as
stacked bars) and what changed against the baseline, module by module; the
unpriced operators; the environment; the command that accepts a change.

``breakdown(record)`` is that per-test part on its own (with ``FRAGMENT_CSS``),
which the pytest-html integration puts under each test of its report.

With a base branch to compare with (``--flop-base-ref``/``--flop-base``; the
records then carry ``base``, ``base_macs`` and ``base_modules``) the page also
shows the base's headline and the tests gone since it, the "base" and "vs base"
columns, and per test its changes against the base, module by module.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from pytest_flopbudget.report.common import (
    FAILING,
    MISSING,
    ONLY_WHEN_SEEN,
    UPDATE_COMMAND,
    BaseSummary,
    base_headline,
    env_differences,
    fmt_delta,
    fmt_gflops,
    fmt_gmacs,
    fmt_params,
    nice_top,
    plain_number,
    sort_records,
    status_counts,
    unpriced_totals,
)
from pytest_flopbudget.report.estimates import time_facts
from pytest_flopbudget.report.memory import memory_chart, memory_facts
from pytest_flopbudget.report.terminal import shorten_left
from pytest_flopbudget.results.conventions import CATEGORIES, PUBLISHED
from pytest_flopbudget.results.result import (
    FLOPS_PER_MAC,
    GIGA,
    STATUSES,
    Record,
    module_deltas,
    pct,
    rank_modules,
)

ROW = 22  # px per test in the overview chart: every label gets its own row, none overlap
FONT = 12  # px, label size: smaller than ROW
LABEL_W = 400  # px for the test-id column of the chart
LABEL_CHARS = 56  # monospace 12px is 7.2px a character: 56 fit in LABEL_W with a margin
PLOT_W = 440  # px for the bars
VALUE_W = 200  # px for the figures right of the bars
CHART_W = LABEL_W + PLOT_W + VALUE_W
AXIS_H = 24  # px above the first row: tick labels
STACK_W = 840  # px, stacked bars of the breakdown
STACK_H = 20
DIFF_W = 200  # px, a module's change bar
TOP_SEGMENTS = 8  # modules drawn in the stacked bar; the rest is one "other modules" segment
TOP_CHANGES = 15  # module changes listed per test
OPEN_GROUP_LIMIT = 60  # an "ok" group longer than this starts folded

STATUS_COLOR = {
    "over-budget": "#c62828",
    "regressed": "#ef6c00",
    "raised": "#ad1457",
    "new": "#1565c0",
    "improved": "#2e7d32",
    "ok": "#78909c",
}
CATEGORY_COLOR = {
    "matmul": "#1f77b4",
    "conv": "#2ca02c",
    "attention": "#9467bd",
    "recurrent": "#8c564b",
    "fft": "#17becf",
    "norm": "#ff7f0e",
    "elementwise": "#bcbd22",
}
MODULE_COLORS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")
OTHER_COLOR = "#bab0ac"
BASELINE_COLOR = "#000000"
BUDGET_COLOR = "#c62828"
GROWTH_COLOR = "#e15759"
SHRINK_COLOR = "#59a14f"

FRAGMENT_CSS = """
.fb-breakdown{font:14px/1.4 system-ui,sans-serif;color:#212121}
.fb-breakdown h4{margin:.8em 0 .3em;font-size:14px}
.fb-facts{display:grid;grid-template-columns:max-content auto;gap:2px 16px;margin:.4em 0}
.fb-facts dt{color:#616161}.fb-facts dd{margin:0;font-variant-numeric:tabular-nums}
.fb-msg{background:#fff3e0;border-left:4px solid #ef6c00;padding:6px 10px;white-space:pre-wrap;overflow-x:auto;font:12px/1.4 monospace}
.fb-legend{list-style:none;padding:0;margin:.3em 0;display:flex;flex-wrap:wrap;gap:4px 18px;font-size:13px}
.fb-legend li{white-space:nowrap}
.fb-sw{display:inline-block;width:11px;height:11px;margin-right:5px;vertical-align:-1px;border-radius:2px}
.fb-table{border-collapse:collapse;font-size:13px;font-variant-numeric:tabular-nums}
.fb-table th,.fb-table td{padding:2px 8px;border-bottom:1px solid #e0e0e0;text-align:right;vertical-align:middle}
.fb-table th:first-child,.fb-table td:first-child{text-align:left}
.fb-table td.fb-id,.fb-table td:first-child code{font:12px monospace;word-break:break-all}
.fb-status{display:inline-block;padding:0 6px;border-radius:8px;color:#fff;font-size:12px;white-space:nowrap}
.fb-note{color:#616161}
"""

PAGE_CSS = """
body{margin:0;padding:16px 24px;font:14px/1.45 system-ui,sans-serif;color:#212121;background:#fafafa}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #e0e0e0}
.fb-headline{font-size:16px;margin:4px 0 12px}
.fb-counts{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0 16px}
.fb-count{min-width:110px;padding:8px 12px;border-radius:6px;color:#fff}
.fb-count b{display:block;font-size:24px;line-height:1.1}
.fb-zero{opacity:.35}
details{margin:6px 0}summary{cursor:pointer;font-weight:600}
.fb-chart{display:block;max-width:100%;height:auto;background:#fff}
.fb-chart text{font-size:12px}.fb-chart .fb-label{font-family:monospace}
.fb-chart .fb-axis{fill:#757575;font-size:11px}
.fb-chart a:hover text{text-decoration:underline}
.fb-test{background:#fff;border:1px solid #e0e0e0;border-radius:6px;padding:4px 12px;margin:8px 0}
.fb-test>summary{font-weight:normal}.fb-test>summary code{font:13px monospace;word-break:break-all}
pre.fb-cmd{background:#263238;color:#eceff1;padding:8px 12px;border-radius:4px;overflow-x:auto}
.fb-warn{color:#bf360c}
"""


def esc(value: object) -> str:
    """HTML-escape text for element content and attribute values alike (``<``, ``&``, both quotes)."""
    return escape(str(value), quote=True)


def _px(value: float) -> str:
    """An SVG coordinate: two decimals at most."""
    return plain_number(value, 2)


def _gflops_of(macs: int) -> float:
    return FLOPS_PER_MAC * macs / GIGA


def _macs_of_gflops(gflops: float) -> float:
    return gflops * GIGA / FLOPS_PER_MAC


def _share(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else MISSING


def status_badge(status: str) -> str:
    color = STATUS_COLOR.get(status, "#616161")
    return f'<span class="fb-status" style="background:{color}">{esc(status)}</span>'


def _anchors(ordered: list[Record]) -> dict[str, str]:
    """One fragment id per record, by its place in the severity order: ``t1``, ``t2``, ..."""
    return {record.id: f"t{i}" for i, record in enumerate(ordered, 1)}


# ---------------------------------------------------------------- against the base branch (when there is one)


def _has_base(records: list[Record]) -> bool:
    return any(r.base is not None for r in records)


def _base_cells(record: Record) -> list[str]:
    if record.base is None:
        return [MISSING, MISSING]
    if record.base_macs is None:
        return [MISSING, "new"]
    return [fmt_gflops(record.base_gflops), fmt_delta(record.base_delta_pct)]


def _base_facts(record: Record) -> list[tuple[str, str]]:
    if record.base is None:
        return []
    if record.base_macs is None:
        return [(f"base ({record.base})", "not in the base: new since it")]
    value = f"{record.base_macs:,} MACs = {fmt_gflops(record.base_gflops)} GFLOPs ({fmt_delta(record.base_delta_pct)} on this branch)"
    return [(f"base ({record.base})", value)]


def _base_section(records: list[Record], base: BaseSummary) -> list[str]:
    out = [f"<h2>Against the base: {esc(base.label)}</h2>", f"<p>{esc(base_headline(records, base))}</p>"]
    if base.gone:
        items = "".join(f"<li><code>{esc(rid)}</code></li>" for rid in base.gone)
        out.append(f"<details><summary>{len(base.gone)} test(s) gone since the base</summary><ul>{items}</ul></details>")
    return out


# ---------------------------------------------------------------- the overview chart


def _scale_top(records: list[Record]) -> float:
    """The GFLOPs at the right end of every overview chart: measured, baseline and budget all fit."""
    values = [0.0]
    for r in records:
        values.append(r.gflops)
        reference = r.reference()[1]
        if reference is not None:
            values.append(_gflops_of(reference))
        if r.budget_gflops is not None:
            values.append(r.budget_gflops)
    return nice_top(max(values))


def overview_chart(records: list[Record], top_gflops: float, anchors: dict[str, str]) -> str:
    """One SVG, one row of ``ROW`` px per record: the measured bar (``data-macs``), the baseline tick and
    the budget line, all on one linear scale (``PLOT_W`` px = ``top_gflops``); the test id left, linked
    to its section, and its figures right."""
    height = AXIS_H + ROW * len(records) + 4
    px_per_gflop = PLOT_W / top_gflops
    out = [
        f'<svg class="fb-chart" width="{CHART_W}" height="{height}" viewBox="0 0 {CHART_W} {height}" '
        f'aria-label="GFLOPs of {len(records)} measurement(s)">'
    ]
    for i in range(5):  # grid and tick labels at 0, 1/4, ..., 1 of the scale
        x = LABEL_W + PLOT_W * i / 4
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        out.append(f'<line x1="{_px(x)}" y1="{AXIS_H - 4}" x2="{_px(x)}" y2="{height}" stroke="#e0e0e0"/>')
        out.append(
            f'<text class="fb-axis" x="{_px(x)}" y="{AXIS_H - 8}" text-anchor="{anchor}">'
            f"{esc(plain_number(top_gflops * i / 4, 4))}</text>"
        )
    out.append(f'<text class="fb-axis" x="{LABEL_W - 8}" y="{AXIS_H - 8}" text-anchor="end">GFLOPs</text>')
    for i, record in enumerate(records):
        y = AXIS_H + i * ROW
        color = STATUS_COLOR.get(record.status, "#616161")
        width = record.gflops * px_per_gflop
        label = shorten_left(record.id, LABEL_CHARS)
        figures = f"{fmt_gflops(record.gflops)} GFLOPs"
        change = record.base_delta_pct if record.base is not None else record.delta_pct
        if change is not None:
            figures += f" · {fmt_delta(change)}" + (" vs base" if record.base is not None else "")
        out.append(f'<g class="fb-row" data-id="{esc(record.id)}" data-status="{esc(record.status)}">')
        out.append(f"<title>{esc(record.id)}: {esc(record.status)}, {esc(_row_title(record))}</title>")
        out.append(
            f'<a href="#{anchors[record.id]}"><text class="fb-label" x="{LABEL_W - 8}" y="{y + 15}" '
            f'text-anchor="end">{esc(label)}</text></a>'
        )
        out.append(
            f'<rect class="fb-bar" x="{LABEL_W}" y="{y + 4}" width="{_px(width)}" height="{ROW - 8}" '
            f'fill="{color}" data-macs="{record.macs}"/>'
        )
        kind, reference, _ = record.reference()  # the base where the run has one, else the baseline
        if reference is not None:
            x = LABEL_W + _gflops_of(reference) * px_per_gflop
            out.append(
                f'<line class="fb-{kind}" x1="{_px(x)}" y1="{y + 1}" x2="{_px(x)}" y2="{y + ROW - 1}" '
                f'stroke="{BASELINE_COLOR}" stroke-width="2" data-macs="{reference}"/>'
            )
        if record.budget_gflops is not None:
            x = LABEL_W + record.budget_gflops * px_per_gflop
            out.append(
                f'<line class="fb-budget" x1="{_px(x)}" y1="{y}" x2="{_px(x)}" y2="{y + ROW}" '
                f'stroke="{BUDGET_COLOR}" stroke-width="2" stroke-dasharray="4 2" '
                f'data-gflops="{record.budget_gflops!r}"/>'
            )
        out.append(f'<text x="{LABEL_W + PLOT_W + 8}" y="{y + 15}">{esc(figures)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def _row_title(record: Record) -> str:
    parts = [f"{fmt_gflops(record.gflops)} GFLOPs"]
    if record.baseline_gflops is not None:
        parts.append(f"baseline {fmt_gflops(record.baseline_gflops)} ({fmt_delta(record.delta_pct)})")
    if record.budget_gflops is not None:
        parts.append(f"budget {fmt_gflops(record.budget_gflops)}")
    return ", ".join(parts)


def _chart_legend(reference: str = "baseline") -> str:
    items = [f'<li><span class="fb-sw" style="background:{STATUS_COLOR[s]}"></span>{esc(s)}</li>' for s in STATUSES]
    items.append(f'<li><span class="fb-sw" style="background:{BASELINE_COLOR};width:3px"></span>{esc(reference)}</li>')
    items.append(
        f'<li><span class="fb-sw" style="border-left:3px dashed {BUDGET_COLOR};width:0;border-radius:0"></span>budget</li>'
    )
    return '<ul class="fb-legend">' + "".join(items) + "</ul>"


def _overview(ordered: list[Record], anchors: dict[str, str]) -> list[str]:
    if not ordered:
        return []
    top = _scale_top(ordered)
    bases = sorted({r.base for r in ordered if r.base is not None})
    reference = f"base {bases[0]}" if len(bases) == 1 else "baseline"  # the ticks show the base where the run has one
    out = [f"<h2>Every measurement against its {esc(reference)} and budget</h2>", _chart_legend(reference)]
    for status in [*STATUSES, *sorted({r.status for r in ordered} - set(STATUSES))]:
        group = [r for r in ordered if r.status == status]
        if not group:
            continue
        is_open = " open" if status != "ok" or len(group) <= OPEN_GROUP_LIMIT else ""
        out.append(
            f'<details class="fb-group" data-status="{esc(status)}"{is_open}>'
            f"<summary>{status_badge(status)} {len(group)} measurement(s)</summary>"
        )
        out.append(overview_chart(group, top, anchors))
        out.append("</details>")
    return out


# ---------------------------------------------------------------- per test: where the compute goes


def stacked_bar(parts: list[tuple[str, int, str]], total: int, label: str) -> str:
    """One SVG bar of ``STACK_W`` px split into ``parts`` (name, MACs, color), each ``MACs / total`` of it."""
    out = [
        f'<svg class="fb-stack" width="{STACK_W}" height="{STACK_H}" viewBox="0 0 {STACK_W} {STACK_H}" '
        f'role="img" aria-label="{esc(label)}" style="max-width:100%;height:auto">',
        f'<rect x="0" y="0" width="{STACK_W}" height="{STACK_H}" fill="#eeeeee"/>',
    ]
    x = 0.0
    for name, macs, color in parts:
        width = STACK_W * macs / total if total else 0.0
        out.append(
            f'<rect class="fb-seg" x="{_px(x)}" y="0" width="{_px(width)}" height="{STACK_H}" fill="{color}" '
            f'data-name="{esc(name)}" data-macs="{macs}"><title>{esc(name)}: '
            f"{esc(fmt_gflops(_gflops_of(macs)))} GFLOPs ({_share(macs, total)})</title></rect>"
        )
        x += width
    out.append("</svg>")
    return "".join(out)


def _legend(parts: list[tuple[str, int, str]], total: int) -> str:
    items = [
        f'<li><span class="fb-sw" style="background:{color}"></span><code>{esc(name)}</code> '
        f"{esc(fmt_gflops(_gflops_of(macs)))} GFLOPs ({_share(macs, total)})</li>"
        for name, macs, color in parts
    ]
    return '<ul class="fb-legend">' + "".join(items) + "</ul>"


def category_parts(record: Record) -> list[tuple[str, int, str]]:
    """The non-zero categories of ``record``, in the convention's order, with their colors."""
    return [(cat, record.categories.get(cat, 0), CATEGORY_COLOR[cat]) for cat in CATEGORIES if record.categories.get(cat, 0)]


def module_parts(record: Record, top: int = TOP_SEGMENTS) -> list[tuple[str, int, str]]:
    """The ``top`` modules with the most MACs, then one ``other modules`` part holding the rest of ``macs``."""
    ranked = rank_modules(record.modules, top)
    parts = [(path, macs, MODULE_COLORS[i % len(MODULE_COLORS)]) for i, (path, macs) in enumerate(ranked)]
    rest = record.macs - sum(macs for _, macs, _ in parts)
    if rest > 0:
        others = len([m for m in record.modules.values() if m]) - len(parts)
        name = f"{others} other module(s)" if others > 0 else "outside any module"
        parts.append((name, rest, OTHER_COLOR))
    return parts


def _where(record: Record) -> list[str]:
    out = ["<h4>Where the compute goes</h4>"]
    if not record.macs:
        return out + ['<p class="fb-note">Nothing was counted (0 MACs).</p>']
    cats = category_parts(record)
    if cats:
        total = sum(macs for _, macs, _ in cats)
        published = record.published_macs or 0
        names = ", ".join(PUBLISHED)
        out.append(
            f'<p>By kind of operator; the published convention ({esc(names)}) is '
            f"{esc(fmt_gmacs(published))} GMACs ({_share(published, total)}).</p>"
        )
        out += [stacked_bar(cats, total, f"MACs by category of {record.id}"), _legend(cats, total)]
    modules = module_parts(record)
    if modules:
        out.append("<p>By module:</p>")
        out += [stacked_bar(modules, record.macs, f"MACs by module of {record.id}"), _legend(modules, record.macs)]
    return out


# ---------------------------------------------------------------- per test: against the baseline


def module_changes(modules: dict[str, int], reference: dict[str, int]) -> list[tuple[str, int, int]]:
    """``(module, MACs in reference, MACs now)`` of every module whose count changed, largest change first."""
    return [(path, reference.get(path, 0), reference.get(path, 0) + delta) for path, delta in module_deltas(modules, reference)]


def _diff_bar(delta: int, largest: int) -> str:
    """A bar from the middle: right and red for growth, left and green for a saving."""
    half = DIFF_W / 2
    width = half * abs(delta) / largest if largest else 0.0
    x = half if delta > 0 else half - width
    color = GROWTH_COLOR if delta > 0 else SHRINK_COLOR
    return (
        f'<svg class="fb-diff" width="{DIFF_W}" height="12" viewBox="0 0 {DIFF_W} 12">'
        f'<line x1="{_px(half)}" y1="0" x2="{_px(half)}" y2="12" stroke="#9e9e9e"/>'
        f'<rect x="{_px(x)}" y="2" width="{_px(width)}" height="8" fill="{color}" data-delta="{delta}"/></svg>'
    )


def _changes(record: Record, title: str, ref_macs: int | None, ref_modules: dict[str, int], absent: str) -> list[str]:
    """What changed against a reference (the baseline, or the base): the total, then module by module."""
    out = [f"<h4>{esc(title)}</h4>"]
    if ref_macs is None:
        return out + [f'<p class="fb-note">{esc(absent)}</p>']
    delta = record.macs - ref_macs
    out.append(
        f"<p>{ref_macs:,} &rarr; {record.macs:,} MACs ({esc(f'{delta:+,}')}, {esc(fmt_delta(pct(record.macs, ref_macs)))}).</p>"
    )
    if not ref_modules:
        return out + ['<p class="fb-note">No module breakdown to compare with.</p>']
    changes = module_changes(record.modules, ref_modules)
    if not changes:
        return out + ['<p class="fb-note">No module changed its count.</p>']
    shown = changes[:TOP_CHANGES]
    largest = max(abs(new - old) for _, old, new in shown)
    rows = []
    for path, old, new in shown:
        change = fmt_delta(pct(new, old)) if old else "new"
        rows.append(
            f"<tr><td><code>{esc(path)}</code></td><td>{old:,}</td><td>{new:,}</td>"
            f"<td>{esc(f'{new - old:+,}')}</td><td>{esc(change)}</td><td>{_diff_bar(new - old, largest)}</td></tr>"
        )
    out.append(
        '<table class="fb-table"><thead><tr><th>module</th><th>before</th><th>MACs now</th>'
        "<th>change</th><th>%</th><th></th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )
    if len(changes) > len(shown):
        out.append(f'<p class="fb-note">{len(changes) - len(shown)} more module(s) changed.</p>')
    return out


def _phase_fact(record: Record, phase: str, macs: int) -> str:
    """A training step's phase: its MACs, and its change against the base's phase where the run has
    a base, else against the baseline entry's."""
    text = f"{macs:,} MACs = {fmt_gflops(_gflops_of(macs))} GFLOPs"
    kind, _, phases = record.reference()
    old = phases.get(phase)
    if old is not None and old != macs:
        against = f"the base {record.base}" if kind == "base" else "the baseline"
        text += f" ({macs - old:+,} MACs, {fmt_delta(pct(macs, old))} against {against})"
    return text


def _facts(record: Record) -> list[tuple[str, str]]:
    facts = [("measured", f"{record.macs:,} MACs = {fmt_gflops(record.gflops)} GFLOPs")]
    if record.published_macs is not None:
        facts.append(("published convention", f"{fmt_gmacs(record.published_macs)} GMACs"))
    if record.params:
        facts.append(("parameters", f"{record.params:,} ({fmt_params(record.params)} M)"))
    if record.budget_gflops is not None:
        facts.append(("budget", f"{fmt_gflops(record.budget_gflops)} GFLOPs"))
    if record.baseline_macs is not None:
        facts.append(("baseline", f"{fmt_gflops(record.baseline_gflops)} GFLOPs ({fmt_delta(record.delta_pct)})"))
    facts += _base_facts(record)
    facts += [(f"{phase} (training step)", _phase_fact(record, phase, macs)) for phase, macs in record.phases.items()]
    facts += memory_facts(record)
    facts += time_facts(record)
    if record.location:
        facts.append(("location", f"{record.location[0]}:{record.location[1]}"))
    if record.unpriced:
        ops = ", ".join(f"{op} x{n}" for op, n in sorted(record.unpriced.items()))
        facts.append(("counted as 0 (no rule)", ops))
    return facts


def breakdown(record: Record, message: bool = True) -> str:
    """One measurement's part of the page: facts, its message (unless ``message`` is false), where the
    compute goes, the changes against the baseline."""
    out = ['<div class="fb-breakdown">', '<dl class="fb-facts">']
    out += [f"<dt>{esc(name)}</dt><dd>{esc(value)}</dd>" for name, value in _facts(record)]
    out.append("</dl>")
    if message and record.message:
        out.append(f'<pre class="fb-msg">{esc(record.message)}</pre>')
    out += _where(record)
    out.append(memory_chart(record))
    out += _changes(record, "Against the baseline", record.baseline_macs, record.baseline_modules, "No baseline entry yet.")
    if record.base is not None:
        out += _changes(record, f"Against the base ({record.base})", record.base_macs, record.base_modules,
                        "Not in the base: new since it.")
    out.append("</div>")
    return "".join(out)


# ---------------------------------------------------------------- the page


def _headline(counts: dict[str, int], total: int) -> str:
    failing = [f"{counts[s]} {s.replace('-', ' ')}" for s in ("regressed", "raised", "over-budget") if counts.get(s)]
    if failing:
        return "FLOP budget: " + ", ".join(failing)
    return "FLOP budget: no measurements" if total == 0 else "FLOP budget: no regressions"


def _counts(counts: dict[str, int]) -> str:
    cards = [
        f'<div class="fb-count{"" if n else " fb-zero"}" data-status="{esc(status)}" '
        f'style="background:{STATUS_COLOR.get(status, "#616161")}"><b>{n}</b>{esc(status)}</div>'
        for status, n in counts.items()
        if n or status not in ONLY_WHEN_SEEN
    ]
    return '<div class="fb-counts">' + "".join(cards) + "</div>"


def _all_table(ordered: list[Record], anchors: dict[str, str]) -> list[str]:
    base = _has_base(ordered)
    head = ["test", "GFLOPs", "published GMACs", "params (M)", "budget GFLOPs", "baseline GFLOPs", "change"]
    head += ["base GFLOPs", "vs base"] if base else []
    head.append("status")
    rows = []
    for r in ordered:
        published = fmt_gmacs(r.published_macs)
        cells = [fmt_gflops(r.gflops), published, fmt_params(r.params), fmt_gflops(r.budget_gflops),
                 fmt_gflops(r.baseline_gflops), fmt_delta(r.delta_pct)]
        cells += _base_cells(r) if base else []
        rows.append(
            f'<tr><td class="fb-id"><a href="#{anchors[r.id]}">{esc(r.id)}</a></td>'
            + "".join(f"<td>{esc(c)}</td>" for c in cells)
            + f"<td>{status_badge(r.status)}</td></tr>"
        )
    return [
        "<h2>All measurements</h2>",
        '<details class="fb-all" open><summary>' + f"{len(ordered)} measurement(s), most severe first</summary>",
        '<table class="fb-table"><thead><tr>' + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>",
        *rows,
        "</tbody></table></details>",
    ]


def _sections(ordered: list[Record], anchors: dict[str, str]) -> list[str]:
    out = ["<h2>Each measurement</h2>"]
    for r in ordered:
        is_open = " open" if r.status in FAILING else ""
        out.append(
            f'<details class="fb-test" id="{anchors[r.id]}"{is_open}><summary>{status_badge(r.status)} '
            f"<code>{esc(r.id)}</code> {esc(fmt_gflops(r.gflops))} GFLOPs {esc(fmt_delta(r.delta_pct))}</summary>"
        )
        out.append(breakdown(r))
        out.append("</details>")
    return out


def _unpriced(records: list[Record]) -> list[str]:
    totals = unpriced_totals(records)
    if not totals:
        return []
    ops = ", ".join(f"<code>{esc(op)}</code> x{n}" for op, n in totals)
    return ["<h2>Operators without a counting rule</h2>", f'<p class="fb-warn">Counted as 0 FLOPs: {ops}</p>']


def _environment(env: dict[str, str], baseline_env: dict[str, str] | None) -> list[str]:
    rows = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in env.items())
    out = ["<h2>Environment</h2>", f'<table class="fb-table"><tbody>{rows}</tbody></table>']
    for key, old, now in env_differences(env, baseline_env):
        out.append(
            f'<p class="fb-warn">The baseline was recorded with {esc(key)} {esc(old)}; this run used '
            f"{esc(key)} {esc(now)}: counts may differ.</p>"
        )
    return out


def _guidance(counts: dict[str, int], command: str | None) -> list[str]:
    out = []
    if counts.get("regressed") or counts.get("new") or counts.get("improved"):
        out += [
            "<h2>Accepting the changes</h2>",
            "<p>If the changes are intended, record them and commit the baseline file:</p>",
            f'<pre class="fb-cmd">{esc(command or UPDATE_COMMAND)}</pre>',
        ]
    if counts.get("raised"):
        out.append("<p>Tests raised against the base beyond its limit need the raise approved, or a cheaper model.</p>")
    if counts.get("over-budget"):
        out.append("<p>Tests over budget must get cheaper, or their budget must be raised in the test itself.</p>")
    return out


def html_report(
    records: Iterable[Record],
    env: dict[str, str],
    baseline_env: dict[str, str] | None = None,
    command: str | None = None,
    base: BaseSummary | None = None,
) -> str:
    """The whole self-contained page as text; the same arguments give the same bytes.
    ``base``: the run's comparison with the base branch, when it has one."""
    records = list(records)
    ordered = sort_records(records)
    anchors = _anchors(ordered)
    counts = status_counts(records)
    headline = _headline(counts, len(records))
    body = [
        "<h1>FLOP report</h1>",
        f'<p class="fb-headline">{esc(headline)}</p>',
        _counts(counts),
        *(_base_section(records, base) if base is not None else []),
        *_overview(ordered, anchors),
    ]
    if ordered:
        body += _all_table(ordered, anchors) + _sections(ordered, anchors)
    body += _unpriced(records) + _environment(env, baseline_env) + _guidance(counts, command)
    head = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(headline)} - pytest-flopbudget</title>\n"
        f"<style>{FRAGMENT_CSS}{PAGE_CSS}</style>\n</head>\n<body>\n"
    )
    return head + "\n".join(body) + "\n</body>\n</html>\n"
