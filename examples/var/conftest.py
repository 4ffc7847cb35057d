"""Put this directory on sys.path so the example imports ``model`` and ``analytic`` directly."""

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
