"""The Markdown report for pull-request comments and the GitHub job summary, with a Mermaid chart."""

from __future__ import annotations

import re
from collections.abc import Iterable

from pytest_flopbudget.report.common import (
    UPDATE_COMMAND,
    BaseSummary,
    base_changes,
    base_headline,
    env_differences,
    finite,
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
from pytest_flopbudget.report.estimates import baseline_change, budget_ms, fmt_change, fmt_ms, rows
from pytest_flopbudget.report.memory import memory_markdown
from pytest_flopbudget.results.result import FLOPS_PER_MAC, GIGA, Record, pct

MARKER = "<!-- pytest-flopbudget report -->"
CHART_LIMIT = 15

_CHANGED_LABEL = {"over-budget": "over budget", "regressed": "regressed", "raised": "raised beyond the base limit"}
_STATUS_ICON = {"over-budget": "❌", "regressed": "❌", "raised": "❌", "new": "🆕", "improved": "⚡", "ok": "✅"}
BASE_LISTED = 10  # new / gone tests named in the open before the rest folds into <details>
TIME_ROWS_OPEN = 10  # time estimate rows shown in the open before the table folds into <details>
TIME_NOTES_LISTED = 5



_MD_ACTIVE = re.compile(r"([\\`*_{}\[\]<>|~])")


def md_text(text: str) -> str:
    """Escape Markdown-active characters in plain text (table cells included)."""
    return _MD_ACTIVE.sub(r"\\\1", text.replace("\r", " ").replace("\n", " "))


def md_code(text: str) -> str:
    """``text`` as an inline code span that is safe inside a GitHub table cell."""
    text = text.replace("\r", " ").replace("\n", " ").replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _status_cell(status: str) -> str:
    icon = _STATUS_ICON.get(status)
    return f"{icon} {status}" if icon else md_text(status)


def _table(header: list[str], align: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def _headline(counts: dict[str, int], total: int) -> list[str]:
    failing = [f"{counts[s]} {_CHANGED_LABEL[s]}" for s in ("regressed", "raised", "over-budget") if counts[s]]
    if failing:
        title = "### ❌ FLOP budget: " + ", ".join(failing)
    elif total == 0:
        title = "### ✅ FLOP budget: no measurements"
    else:
        title = "### ✅ FLOP budget: no regressions"
    rest = f"{counts['improved']} improved · {counts['new']} new · {counts['ok']} unchanged"
    return [title, "", rest]


def _changed_table(changed: list[Record], against: str = "") -> list[str]:
    """The tests whose status is not ok; ``against`` names the baseline when a base is shown too."""
    if not changed:
        return [f"No test changed its FLOP count{f' against {md_code(against)}' if against else ''}."]
    header = ["Test", "Baseline GFLOPs", "This run GFLOPs", "Change", "Budget GFLOPs", "Status"]
    align = [":---", "---:", "---:", "---:", "---:", ":---"]
    rows = [
        [
            md_code(r.id),
            fmt_gflops(r.baseline_gflops),
            fmt_gflops(r.gflops),
            fmt_delta(r.delta_pct),
            fmt_gflops(r.budget_gflops),
            _status_cell(r.status),
        ]
        for r in changed
    ]
    return _table(header, align, rows)


def _all_table(records: list[Record]) -> list[str]:
    header = ["Test", "GFLOPs", "Published GMACs", "Params (M)", "Budget GFLOPs", "Baseline GFLOPs", "Change", "Status"]
    align = [":---", "---:", "---:", "---:", "---:", "---:", "---:", ":---"]
    rows = [
        [
            md_code(r.id),
            fmt_gflops(r.gflops),
            fmt_gmacs(r.published_macs),
            fmt_params(r.params),
            fmt_gflops(r.budget_gflops),
            fmt_gflops(r.baseline_gflops),
            fmt_delta(r.delta_pct),
            _status_cell(r.status),
        ]
        for r in sorted(records, key=lambda r: r.id)
    ]
    summary = f"<summary>All {len(records)} measurements</summary>"
    note = (
        "<sub>GFLOPs = 2 × MACs of every priced operator; Published GMACs = MACs of matmul, convolution "
        "and attention only, the convention of torchvision's GFLOPS, timm's GMACs, fvcore and papers.</sub>"
    )
    return ["<details>", summary, "", *_table(header, align, rows), "", note, "", "</details>"]


# -- Mermaid chart


_MERMAID_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-+=()/ ]")


def short_name(record_id: str, limit: int = 30) -> str:
    """A chart label: the part after the last ``::``, with characters Mermaid dislikes removed."""
    name = record_id.rsplit("::", 1)[-1]
    name = name.replace("[", "(").replace("]", ")").replace("#", " ")
    name = _MERMAID_UNSAFE.sub("_", name).strip() or "test"
    if len(name) > limit:
        head = (limit - 2) // 2
        name = name[:head] + ".." + name[-(limit - 2 - head):]
    return name


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


def _series(values: list[float | None], measured: list[float]) -> list[float] | None:
    """Fill gaps with the measured value; None when no test has a value at all."""
    if all(v is None for v in values):
        return None
    return [m if v is None else v for v, m in zip(values, measured)]


def _reference_gflops(record: Record) -> float | None:
    """What the chart's line shows for ``record``: the base's GFLOPs where the run has a base, else the baseline's."""
    macs = record.reference()[1]
    return None if macs is None else finite(FLOPS_PER_MAC * macs / GIGA)


def mermaid_chart(changed: list[Record], limit: int = CHART_LIMIT, base_label: str | None = None) -> list[str]:
    """A Mermaid ``xychart-beta`` block: bars = this run, lines = baseline (the base, ``base_label``,
    where the run has one: an accepted raise then still shows against the base) and budget."""
    shown = changed[:limit]
    if not shown:
        return []
    names = _unique([short_name(r.id) for r in shown])
    measured = [r.gflops for r in shown]
    baseline = _series([_reference_gflops(r) for r in shown], measured)
    budget = _series([finite(r.budget_gflops) for r in shown], measured)
    top = nice_top(max(measured + (baseline or []) + (budget or [])))
    labels = ", ".join(f'"{n}"' for n in names)
    lines = ["```mermaid", "xychart-beta", '    title "GFLOPs of changed tests"']
    lines += [f"    x-axis [{labels}]", f'    y-axis "GFLOPs" 0 --> {plain_number(top)}']
    lines.append("    bar [" + ", ".join(plain_number(v) for v in measured) + "]")
    legend = ["bars: this run"]
    reference = "baseline" if base_label is None else f"base {base_label}"
    for label, series in ((reference, baseline), ("budget", budget)):
        if series is not None:
            lines.append("    line [" + ", ".join(plain_number(v) for v in series) + "]")
            legend.append(f"line {len(legend)}: {label}")
    lines.append("```")
    note = "; ".join(legend)
    if len(changed) > limit:
        note += f" (showing {limit} of {len(changed)} changed tests)"
    return [*lines, "", f"<sub>{note}</sub>"]


# -- environment and guidance


def env_warnings(env: dict[str, str], baseline_env: dict[str, str] | None) -> list[str]:
    """One warning per counting-relevant key recorded in both environments with different values."""
    return [
        f"⚠️ baseline recorded with {key} {md_text(old)}, this run used {key} {md_text(now)}: counts may differ"
        for key, old, now in env_differences(env, baseline_env)
    ]


def _environment(env: dict[str, str], baseline_env: dict[str, str] | None) -> list[str]:
    parts = " · ".join(f"{md_text(str(k))} {md_text(str(v))}" for k, v in env.items())
    lines = [f"**Environment:** {parts or 'unknown'}"]
    for warning in env_warnings(env, baseline_env):
        lines += ["", f"> {warning}"]
    return lines



def _phases_table(records: list[Record]) -> list[str]:
    """Training steps: GFLOPs per phase, with each phase's change against the base where the run
    has one, else against the baseline."""
    steps = [r for r in sorted(records, key=lambda r: r.id) if r.phases]
    if not steps:
        return []
    phases = list(dict.fromkeys(p for r in steps for p in r.phases))
    header = ["Training step", *(f"{p.capitalize()} GFLOPs" for p in phases)]
    rows = []
    for r in steps:
        cells = [md_code(r.id)]
        for phase in phases:
            macs, old = r.phases.get(phase), r.reference()[2].get(phase)
            cell = fmt_gflops(None if macs is None else FLOPS_PER_MAC * macs / GIGA)
            if macs is not None and old is not None and macs != old:
                cell += f" ({fmt_delta(pct(macs, old))})"
            cells.append(cell)
        rows.append(cells)
    return _table(header, [":---", *("---:" for _ in phases)], rows)


def _time_table(records: list[Record]) -> list[str]:
    """Time estimates: one row per test and device (the bound that binds, the time budget, the baseline's
    time); folded when long; nothing when no test has estimates."""
    listed = rows(records)
    notes = [(r.id, note) for r in sorted(records, key=lambda r: r.id) for note in r.time_notes]
    if not listed and not notes:
        return []
    header = ["Test", "Device", "Est. ms", "Bound", "Budget ms", "Baseline ms", "Change"]
    table = []
    for r, name, est in listed:
        budget, change = budget_ms(r, name), baseline_change(r, name)
        table.append([
            md_code(r.id), md_code(name), fmt_ms(est["ms"]), f"{md_text(str(est['bound']))} {100 * est['share']:.0f}%",
            "" if budget is None else f"{budget:g}", "" if change is None else fmt_ms(change[0]),
            "" if change is None else fmt_change(change[1]),
        ])
    lines = _table(header, [":---", ":---", "---:", ":---", "---:", "---:", "---:"], table) if table else []
    if len(listed) > TIME_ROWS_OPEN:
        lines = ["<details>", f"<summary>{len(listed)} time estimates</summary>", "", *lines, "", "</details>"]
    title = "**Time estimates** (roofline lower bound: no launch overhead, no fusion, peak rates; docs/deployment.md)"
    shown = [f"- {md_code(rid)}: {md_text(note)}" for rid, note in notes[:TIME_NOTES_LISTED]]
    if len(notes) > TIME_NOTES_LISTED:
        shown.append(f"- and {len(notes) - TIME_NOTES_LISTED} more")
    if shown:
        shown = ["⚠️ Times not compared:", "", *shown]
    return [title, "", *lines, *([""] if lines and shown else []), *shown]


def _unpriced_note(records: list[Record]) -> list[str]:
    totals = unpriced_totals(records)
    if not totals:
        return []
    ops = ", ".join(f"{md_code(op)} ×{n}" for op, n in totals)
    return [f"⚠️ Operators counted as 0 FLOPs (no counting rule): {ops}"]


def _guidance(counts: dict[str, int], command: str | None) -> list[str]:
    lines = []
    if counts["regressed"]:
        run = command or UPDATE_COMMAND
        lines += [
            "**If the increase is intended**, accept it and commit the updated baseline file:",
            "",
            "```sh",
            run,
            "```",
        ]
    if counts["raised"]:
        if lines:
            lines.append("")
        lines.append(
            "Tests raised beyond the base limit need approval: the check passes without the limit once the "
            "raise is approved (see the workflow's approval label), or the model must get cheaper."
        )
    if counts["over-budget"]:
        if lines:
            lines.append("")
        lines.append("Tests over budget must get cheaper, or their budget must be raised in the test itself.")
    return lines


def _base_section(records: list[Record], base: BaseSummary) -> list[str]:
    """Against the base: the headline sentence, a table of the tests raised or lowered with the
    modules that changed, and the tests new or gone since the base."""
    changes = base_changes(records)
    lines = [f"**Against {md_code(base.label)}:** {base_headline(records, base, md_code)}"]
    if not base.exists:
        return lines
    moved = changes.raised + changes.lowered
    if moved:
        header = ["Test", f"{md_text(base.label)} GFLOPs", "This run GFLOPs", "Change", "Modules that changed", "Status"]
        align = [":---", "---:", "---:", "---:", ":---", ":---"]
        rows = [
            [md_code(r.id), fmt_gflops(r.base_gflops), fmt_gflops(r.gflops), fmt_delta(r.base_delta_pct),
             _module_cell(r), _status_cell(r.status)]
            for r in moved
        ]
        lines += ["", *_table(header, align, rows)]
    for what, ids in (("New since", [r.id for r in changes.new]), ("Gone since", list(base.gone or ()))):
        if ids:
            lines += ["", *_id_list(f"{what} {md_code(base.label)} ({len(ids)})", ids)]
    return lines


def _module_cell(record: Record, n: int = 3) -> str:
    """The modules that changed most against the base: ``head`` +3.1%, ``blocks.*.attn`` new."""
    cells = []
    for path, delta in record.base_module_changes()[:n]:
        old = record.base_modules.get(path, 0)
        cells.append(f"{md_code(path)} {fmt_delta(100.0 * delta / old) if old else 'new'}")
    return ", ".join(cells) or "-"


def _id_list(title: str, ids: list[str]) -> list[str]:
    items = [f"- {md_code(rid)}" for rid in ids]
    if len(ids) <= BASE_LISTED:
        return [f"{title}:", "", *items]
    return ["<details>", f"<summary>{title}</summary>", "", *items, "", "</details>"]


def markdown_report(
    records: Iterable[Record],
    env: dict[str, str],
    baseline_env: dict[str, str] | None,
    command: str | None = None,
    base: BaseSummary | None = None,
) -> str:
    """A PR-comment report: marker, verdict, the comparison with the base (when there is one),
    changed tests, chart, all tests, environment, guidance."""
    records = list(records)
    counts = status_counts(records)
    changed = [r for r in sort_records(records) if r.status != "ok"]
    sections = [[MARKER], _headline(counts, len(records))]
    if base is not None:
        sections.append(_base_section(records, base))
    if records:
        sections.append(_changed_table(changed, "" if base is None else base.baseline_name))
    if base is None:
        sections += [mermaid_chart(changed)]
    else:  # the tests changed against the base too, an accepted raise among them
        moved = base_changes(records)
        charted = changed + [r for r in moved.raised + moved.lowered if r.status == "ok"]
        sections += [mermaid_chart(charted, base_label=base.label)]
    if records:
        sections.append(_all_table(records))
    sections += [_phases_table(records), memory_markdown(records), _time_table(records), _unpriced_note(records),
                 _environment(env, baseline_env), _guidance(counts, command)]
    return "\n\n".join("\n".join(s) for s in sections if s) + "\n"
