"""The VAR example suite: imports of the local modules.

Its per-model GFLOPs table is printed by ``examples/conftest.py`` (``comparison.var_table``): under
pytest-xdist the controller loads only the conftest files above the paths it was given, so a
terminal summary here would not run in ``pytest examples -n 2``.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
