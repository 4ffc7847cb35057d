"""Write docs/index.md, the documentation site's home page, from README.md.

The site's home is the README's user part (everything above "## Working on the plugin"), with its
``docs/`` links made relative to the site. Run from the repository root after editing the README:
``python .ci/docs_index.py``; tests/test_docs.py fails while the page is out of date.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CUT = "## Working on the plugin"
TAIL = (
    f"{CUT}\n\nThe two commands that run the example suites and the test suite on a fresh clone are in the\n"
    "repository's README; the layout of the package is in [Development](development.md).\n"
)
DROP = 'The documentation site is built from `docs/` (`mkdocs build --strict`; `pip install -e ".[docs]"`):\n'


def index_page(readme: str) -> str:
    """The home page's text for this README."""
    body = readme.split(CUT)[0].replace("](docs/", "](").replace(DROP, "")
    return body + TAIL


def main() -> int:
    page = index_page((ROOT / "README.md").read_text(encoding="utf-8"))
    target = ROOT / "docs" / "index.md"
    if "--check" in sys.argv[1:]:
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current != page:
            print("docs/index.md is out of date: run python .ci/docs_index.py")
            return 1
        return 0
    target.write_text(page, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
