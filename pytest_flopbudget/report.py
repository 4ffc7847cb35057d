"""Render FLOP records for people and machines: terminal table, JSON, Markdown, GitHub annotations.

Pure standard library: this module only formats ``Record`` data, it never imports torch or pytest.
Every output is deterministic (no timestamps), so reports diff cleanly between runs.
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable

from .result import FLOPS_PER_MAC, GIGA, STATUSES, Record, rank_modules

MARKER = "<!-- pytest-flopbudget report -->"
UPDATE_COMMAND = "pytest --flop-update"
CHART_LIMIT = 15
TOP_MODULES = 10
MISSING = "-"

_SEVERITY = {status: index for index, status in enumerate(STATUSES)}
_FAILING = ("over-budget", "regressed")
_CHANGED_LABEL = {"over-budget": "over budget", "regressed": "regressed"}
_STATUS_ICON = {"over-budget": "❌", "regressed": "❌", "new": "🆕", "improved": "⚡", "ok": "✅"}


# ---------------------------------------------------------------- ordering and counts


def _severity(record: Record) -> int:
    return _SEVERITY.get(record.status, len(STATUSES))


def _sort_key(record: Record) -> tuple:
    delta = record.delta_pct
    return (_severity(record), delta is None, -(delta or 0.0), record.id)


def sort_records(records: Iterable[Record]) -> list[Record]:
    """Most severe status first, then the largest change, then the id."""
    return sorted(records, key=_sort_key)


def status_counts(records: Iterable[Record]) -> dict[str, int]:
    """Count per status; every status in STATUSES is a key, in that order."""
    counts = {status: 0 for status in STATUSES}
    for record in records:
        counts[record.status] = counts.get(record.status, 0) + 1
    return counts


def counts_line(records: Iterable[Record]) -> str:
    """``1 over-budget, 2 regressed, 0 new, 1 improved, 12 ok`` (ASCII separators)."""
    return ", ".join(f"{n} {status}" for status, n in status_counts(records).items())


# ---------------------------------------------------------------- number formatting


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return value


def _fixed(value: float, decimals: int) -> str:
    """``decimals`` decimals, more below 0.1 so that small values keep ``decimals`` significant digits."""
    if value == 0 or abs(value) >= 0.1:
        return f"{value:.{decimals}f}"
    extra = -math.floor(math.log10(abs(value))) - 1
    return f"{value:.{min(decimals + extra, 9)}f}"


def fmt_gflops(value: float | None) -> str:
    """3 decimals (``3.642``); small values get more (``0.0510``) so a 3% change stays visible."""
    value = _finite(value)
    return MISSING if value is None else _fixed(value, 3)


def fmt_delta(delta: float | None) -> str:
    """``+7.4%``, ``-2.0%``, ``0.0%``; a change too small for one decimal keeps 3 significant digits (``+0.0144%``)."""
    if delta is None or math.isnan(delta):
        return MISSING
    if math.isinf(delta):
        return "+inf%" if delta > 0 else "-inf%"
    if delta == 0:
        return "0.0%"
    if abs(delta) < 0.05:
        return f"{delta:+.3g}%"
    return f"{delta:+.1f}%"


def fmt_params(params: int) -> str:
    """Parameters in millions (``-`` when none were counted)."""
    return _fixed(params / 1e6, 2) if params else MISSING


# ---------------------------------------------------------------- terminal


_HEADERS = ("test", "GFLOPs", "budget", "baseline", "change", "status")
_GAP = "  "
_MIN_TEST_WIDTH = 12


def shorten_left(text: str, width: int) -> str:
    """Keep the end of ``text`` (the test name), replacing the start with ``...``."""
    if len(text) <= width:
        return text
    if width <= 3:
        return text[-width:] if width > 0 else ""
    return "..." + text[-(width - 3):]


def _row(record: Record) -> list[str]:
    return [
        record.id,
        fmt_gflops(record.gflops),
        fmt_gflops(record.budget_gflops),
        fmt_gflops(record.baseline_gflops),
        fmt_delta(record.delta_pct),
        record.status,
    ]


def _format_line(cells: list[str], widths: list[int]) -> str:
    test = cells[0].ljust(widths[0])
    numbers = [cell.rjust(w) for cell, w in zip(cells[1:5], widths[1:5])]
    return _GAP.join([test, *numbers, cells[5]]).rstrip()


def terminal_table(records: list[Record], width: int = 120) -> list[str]:
    """Lines of the FLOP table, most severe first; no ANSI codes. Empty input gives no lines."""
    if not records:
        return []
    rows = [_row(record) for record in sort_records(records)]
    widths = [max(len(r[i]) for r in [list(_HEADERS), *rows]) for i in range(len(_HEADERS))]
    others = sum(widths[1:]) + len(_GAP) * (len(_HEADERS) - 1)
    widths[0] = min(widths[0], max(_MIN_TEST_WIDTH, width - others))
    for row in rows:
        row[0] = shorten_left(row[0], widths[0])
    lines = [_format_line(list(_HEADERS), widths)]
    lines.append("-" * (widths[0] + others))
    lines.extend(_format_line(row, widths) for row in rows)
    return lines


def hints(records: Iterable[Record], baseline_path: str, command: str = UPDATE_COMMAND) -> list[str]:
    """Remediation lines with the exact command to run (``command`` records counts), in severity order."""
    counts = status_counts(records)
    lines = []
    if counts["over-budget"]:
        lines.append(
            f"Over budget ({counts['over-budget']}): make the model cheaper or raise its budget in the test; "
            f"{command} does not change budgets."
        )
    if counts["regressed"]:
        lines.append(
            f"Regressed ({counts['regressed']}): if the growth is intended, accept it with {command} "
            f"(rewrites {baseline_path}; commit it)"
        )
    if counts["new"]:
        lines.append(f"New ({counts['new']}): no baseline entry yet; {command} records them.")
    if counts["improved"]:
        lines.append(
            f"Improved ({counts['improved']}): lock the gain in with {command} "
            "so a later change cannot silently give it back."
        )
    return lines


# ---------------------------------------------------------------- JSON


def _json_safe(value: Any) -> Any:
    """Replace inf/nan by None and tuples by lists, recursively, so json.dumps(allow_nan=False) works."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def top_modules(modules: dict[str, int], n: int = TOP_MODULES) -> list[dict[str, Any]]:
    """The ``n`` module paths with the most MACs, largest first."""
    return [
        {"module": path or "<root>", "macs": macs, "gflops": FLOPS_PER_MAC * macs / GIGA}
        for path, macs in rank_modules(modules, n)
    ]


def _test_json(record: Record) -> dict[str, Any]:
    location = {"path": record.location[0], "line": record.location[1]} if record.location else None
    return {
        "id": record.id,
        "nodeid": record.nodeid,
        "key": record.key,
        "macs": record.macs,
        "flops": FLOPS_PER_MAC * record.macs,
        "gflops": record.gflops,
        "params": record.params,
        "budget_gflops": record.budget_gflops,
        "baseline_macs": record.baseline_macs,
        "baseline_gflops": record.baseline_gflops,
        "delta_pct": record.delta_pct,
        "status": record.status,
        "message": record.message,
        "location": location,
        "unpriced": dict(sorted(record.unpriced.items())),
        "top_modules": top_modules(record.modules),
    }


def json_report(
    records: Iterable[Record],
    env: dict[str, str],
    baseline_path: str | None,
    extra: dict | None = None,
) -> dict:
    """A JSON-ready dict (schema 1); tests sorted by id. ``extra`` keys are added but never replace core keys."""
    records = list(records)
    report: dict[str, Any] = {
        "schema": 1,
        "env": dict(env),
        "baseline": baseline_path,
        "summary": status_counts(records),
        "tests": [_test_json(r) for r in sorted(records, key=lambda r: r.id)],
    }
    for key, value in (extra or {}).items():
        report.setdefault(key, value)
    return _json_safe(report)


# ---------------------------------------------------------------- Markdown


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
    failing = [f"{counts[s]} {_CHANGED_LABEL[s]}" for s in ("regressed", "over-budget") if counts[s]]
    if failing:
        title = "### ❌ FLOP budget: " + ", ".join(failing)
    elif total == 0:
        title = "### ✅ FLOP budget: no measurements"
    else:
        title = "### ✅ FLOP budget: no regressions"
    rest = f"{counts['improved']} improved · {counts['new']} new · {counts['ok']} unchanged"
    return [title, "", rest]


def _changed_table(changed: list[Record]) -> list[str]:
    if not changed:
        return ["No test changed its FLOP count."]
    header = ["Test", "Baseline GFLOPs", "This run GFLOPs", "Change", "Budget", "Status"]
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
    header = ["Test", "GFLOPs", "Params (M)", "Budget", "Baseline", "Change", "Status"]
    align = [":---", "---:", "---:", "---:", "---:", "---:", ":---"]
    rows = [
        [
            md_code(r.id),
            fmt_gflops(r.gflops),
            fmt_params(r.params),
            fmt_gflops(r.budget_gflops),
            fmt_gflops(r.baseline_gflops),
            fmt_delta(r.delta_pct),
            _status_cell(r.status),
        ]
        for r in sorted(records, key=lambda r: r.id)
    ]
    summary = f"<summary>All {len(records)} measurements</summary>"
    return ["<details>", summary, "", *_table(header, align, rows), "", "</details>"]


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


def _num(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def _series(values: list[float | None], measured: list[float]) -> list[float] | None:
    """Fill gaps with the measured value; None when no test has a value at all."""
    if all(v is None for v in values):
        return None
    return [m if v is None else v for v, m in zip(values, measured)]


def _nice_top(value: float) -> float:
    if value <= 0:
        return 1.0
    step = 10 ** math.floor(math.log10(value))
    for factor in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if factor * step >= value * 1.05:
            return factor * step
    return 10 * step


def mermaid_chart(changed: list[Record], limit: int = CHART_LIMIT) -> list[str]:
    """A Mermaid ``xychart-beta`` block: bars = this run, lines = baseline and budget."""
    shown = changed[:limit]
    if not shown:
        return []
    names = _unique([short_name(r.id) for r in shown])
    measured = [r.gflops for r in shown]
    baseline = _series([_finite(r.baseline_gflops) for r in shown], measured)
    budget = _series([_finite(r.budget_gflops) for r in shown], measured)
    top = _nice_top(max(measured + (baseline or []) + (budget or [])))
    labels = ", ".join(f'"{n}"' for n in names)
    lines = ["```mermaid", "xychart-beta", '    title "GFLOPs of changed tests"']
    lines += [f"    x-axis [{labels}]", f'    y-axis "GFLOPs" 0 --> {_num(top)}']
    lines.append("    bar [" + ", ".join(_num(v) for v in measured) + "]")
    legend = ["bars: this run"]
    for label, series in (("baseline", baseline), ("budget", budget)):
        if series is not None:
            lines.append("    line [" + ", ".join(_num(v) for v in series) + "]")
            legend.append(f"line {len(legend)}: {label}")
    lines.append("```")
    note = "; ".join(legend)
    if len(changed) > limit:
        note += f" (showing {limit} of {len(changed)} changed tests)"
    return [*lines, "", f"<sub>{note}</sub>"]


# -- environment and guidance


def _counting_key(key: str) -> bool:
    """Environment keys whose change can change FLOP counts."""
    return key == "torch" or "counter" in key or key in ("torchprofile", "flops_per_mac")


def env_warnings(env: dict[str, str], baseline_env: dict[str, str] | None) -> list[str]:
    """One warning per counting-relevant key recorded in both environments with different values."""
    if not baseline_env:
        return []
    lines = []
    for key, value in env.items():
        old = baseline_env.get(key)
        if _counting_key(key) and old is not None and str(old) != str(value):
            lines.append(
                f"⚠️ baseline recorded with {key} {md_text(str(old))}, "
                f"this run used {key} {md_text(str(value))}: counts may differ"
            )
    return lines


def _environment(env: dict[str, str], baseline_env: dict[str, str] | None) -> list[str]:
    parts = " · ".join(f"{md_text(str(k))} {md_text(str(v))}" for k, v in env.items())
    lines = [f"**Environment:** {parts or 'unknown'}"]
    for warning in env_warnings(env, baseline_env):
        lines += ["", f"> {warning}"]
    return lines


def unpriced_totals(records: Iterable[Record]) -> list[tuple[str, int]]:
    """Operators the counter could not price, with how often they ran in all records, most frequent first."""
    totals: dict[str, int] = {}
    for record in records:
        for op, n in record.unpriced.items():
            totals[op] = totals.get(op, 0) + n
    return sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))


def unpriced_line(records: Iterable[Record]) -> str | None:
    """One terminal line naming the unpriced operators and the tests that ran them, or None."""
    records = list(records)
    totals = unpriced_totals(records)
    if not totals:
        return None
    ops = ", ".join(f"{op} x{n}" for op, n in totals)
    tests = sorted(r.id for r in records if r.unpriced)
    return f"flopbudget: counted as 0 (no counting rule): {ops}; in {len(tests)} measurement(s): {', '.join(tests)}"


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
    if counts["over-budget"]:
        if lines:
            lines.append("")
        lines.append("Tests over budget must get cheaper, or their budget must be raised in the test itself.")
    return lines


def markdown_report(
    records: Iterable[Record],
    env: dict[str, str],
    baseline_env: dict[str, str] | None,
    command: str | None = None,
) -> str:
    """A PR-comment report: marker, verdict, changed tests, chart, all tests, environment, guidance."""
    records = list(records)
    counts = status_counts(records)
    changed = [r for r in sort_records(records) if r.status != "ok"]
    sections = [[MARKER], _headline(counts, len(records))]
    if records:
        sections.append(_changed_table(changed))
    sections += [mermaid_chart(changed)]
    if records:
        sections.append(_all_table(records))
    sections += [_unpriced_note(records), _environment(env, baseline_env), _guidance(counts, command)]
    return "\n\n".join("\n".join(s) for s in sections if s) + "\n"


# ---------------------------------------------------------------- GitHub annotations


def escape_data(text: str) -> str:
    """GitHub workflow-command message escaping."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """GitHub workflow-command property escaping (also ``:`` and ``,``)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _annotation(level: str, record: Record) -> str:
    props = []
    if record.location:
        path, line = record.location
        props += [f"file={escape_property(path)}", f"line={int(line)}"]
    props.append(f"title={escape_property('FLOP budget')}")
    message = record.message or f"{record.status}: {fmt_gflops(record.gflops)} GFLOPs"
    return f"::{level} {','.join(props)}::{escape_data(f'{record.id}: {message}')}"


def annotations(records: Iterable[Record]) -> list[str]:
    """``::error`` for over-budget and regressed records, ``::warning`` for new ones, most severe first.

    Records with a location point at the test's file and line; those without one still
    get an annotation (shown in the run summary) so that no failure goes unmentioned.
    """
    lines = []
    for record in sort_records(records):
        if record.status in _FAILING:
            lines.append(_annotation("error", record))
        elif record.status == "new":
            lines.append(_annotation("warning", record))
    return lines
