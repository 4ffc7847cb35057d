"""The HTML report in a real headless browser (Debian's chromium): it renders, and its DOM holds every test.

Skipped when chromium is not installed, except under CI (CI set), where it fails instead:
.ci/run installs chromium when it is absent. The screenshot is read with zlib alone (a PNG's
rows, unfiltered), so nothing heavy is needed to check its pixels.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pytest_flopbudget.gate.settings import ci_is_set
from pytest_flopbudget.report import html as page
from pytest_flopbudget.results.result import STATUSES, Record

IN_CI = ci_is_set()  # read at import: the tests' own environment has CI removed (conftest.py)
G = 500_000_000  # MACs in one GFLOP
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--hide-scrollbars", "--window-size=1200,1400",
]


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        if IN_CI:
            pytest.fail("chromium is not installed; CI must run the browser tests (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def browse(tmp_path: Path, target: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    command = [chromium(), *FLAGS, f"--user-data-dir={profile}", *args, target.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=tmp_path)


def records() -> list[Record]:
    ids = [f"tests/test_zoo.py::test_model[{i:02d}]" for i in range(30)]
    ids += ["tests/test_m.py::test_x[<b>&\"q\"'s'</b>]", "tests/test_m.py::test_ok#key&<1>"]
    out = []
    for i, rid in enumerate(ids):
        status = STATUSES[i % len(STATUSES)]
        baseline = None if status == "new" else round((1 + i % 7) * G * (0.8 if status == "regressed" else 1))
        out.append(Record(
            id=rid, nodeid=rid.split("#")[0], macs=round((1 + i % 7) * G), status=status, baseline_macs=baseline,
            budget_gflops=8.0 if i % 3 == 0 else None, modules={"encoder": round(0.6 * (1 + i % 7) * G)},
            categories={"matmul": round((1 + i % 7) * G)},
        ))
    return out


def png_rgb(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB(A) rows of an 8-bit, non-interlaced RGB or RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0, header
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if kind == 1:
                line[x] = (line[x] + a) & 255
            elif kind == 2:
                line[x] = (line[x] + b) & 255
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line) if bpp == 3 else bytes(v for i, v in enumerate(line) if i % 4 != 3))
        prev = line
    return width, height, rows


def color_counts(rows: list[bytes]) -> dict[tuple[int, int, int], int]:
    counts: dict[tuple[int, int, int], int] = {}
    for line in rows:
        for i in range(0, len(line), 3):
            px = (line[i], line[i + 1], line[i + 2])
            counts[px] = counts.get(px, 0) + 1
    return counts


def rgb(hex_color: str) -> tuple[int, int, int]:
    return tuple(int(hex_color[i:i + 2], 16) for i in (1, 3, 5))


def test_the_page_renders_in_chromium(tmp_path: Path) -> None:
    target = tmp_path / "flops.html"
    target.write_text(page.html_report(records(), {"python": "3.11", "torch": "2.13.0"}), encoding="utf-8")
    shot = tmp_path / "shot.png"
    done = browse(tmp_path, target, f"--screenshot={shot}")
    assert shot.is_file(), done.stderr[-2000:]
    width, height, rows = png_rgb(shot.read_bytes())
    assert (width, height) == (1200, 1400)
    counts = color_counts(rows)
    assert counts.get(rgb("#fafafa"), 0) > 0.05 * width * height  # the page's background: its CSS applied
    assert counts.get(rgb("#ffffff"), 0) > 0.05 * width * height  # the charts' background
    most = max(counts.values())
    assert width * height - most > 0.2 * width * height  # not blank: no one color covers the page
    # The overview bars in their status colors: every status has at least one bar on screen
    # (a row is 14 px high; a 1-GFLOP bar is PLOT_W / 8 px wide, so hundreds of pixels each).
    for status in STATUSES:
        assert counts.get(rgb(page.STATUS_COLOR[status]), 0) > 500, status


class TextOf(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.svgs = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.svgs += tag == "svg"

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_the_rendered_dom_holds_every_test(tmp_path: Path) -> None:
    measured = records()
    target = tmp_path / "flops.html"
    text = page.html_report(measured, {"python": "3.11"})
    target.write_text(text, encoding="utf-8")
    done = browse(tmp_path, target, "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    parsed = TextOf()
    parsed.feed(done.stdout)
    shown = "\n".join(parsed.text)
    for record in measured:
        assert record.id in shown, record.id  # the raw id, as the browser parsed and shows it
    source = TextOf()
    source.feed(text)
    assert parsed.svgs == source.svgs > len(STATUSES)  # every chart made it into the DOM
