"""GitHub Actions workflow commands: ``::error``/``::warning`` annotations at the failing tests."""


from collections.abc import Iterable

from pytest_flopbudget.report.common import FAILING, fmt_delta, fmt_gflops, sort_records
from pytest_flopbudget.results.result import Record


def escape_data(text: str) -> str:
    """GitHub workflow-command message escaping."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """GitHub workflow-command property escaping (also ``:`` and ``,``)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _annotation(level: str, record: Record, text: str = "") -> str:
    props = []
    if record.location:
        path, line = record.location
        props += [f"file={escape_property(path)}", f"line={int(line)}"]
    props.append(f"title={escape_property('FLOP budget')}")
    message = text or record.message or f"{record.status}: {fmt_gflops(record.gflops)} GFLOPs"
    return f"::{level} {','.join(props)}::{escape_data(f'{record.id}: {message}')}"


def annotations(records: Iterable[Record]) -> list[str]:
    """``::error`` for over-budget, regressed and raised records, ``::warning`` for new ones, and
    ``::notice`` for a raise against the base that the baseline accepted; most severe first.

    Records with a location point at the test's file and line; those without one still
    get an annotation (shown in the run summary) so that no failure goes unmentioned.
    """
    lines = []
    for record in sort_records(records):
        if record.status in FAILING:
            lines.append(_annotation("error", record))
        elif record.status == "new":
            lines.append(_annotation("warning", record))
        elif record.base_macs is not None and record.macs > record.base_macs:
            text = (f"raised {fmt_delta(record.base_delta_pct)} against {record.base}: {fmt_gflops(record.base_gflops)} -> "
                    f"{fmt_gflops(record.gflops)} GFLOPs, accepted in the baseline")
            lines.append(_annotation("notice", record, text))
    return lines
