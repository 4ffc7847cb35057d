"""The options of a measurement and their choices. Plain data, validated here, so that neither the
public API nor the pytest side needs torch to check them."""

from __future__ import annotations

from typing import Any

OPTIONS: dict[str, tuple[Any, ...]] = {
    "counter": ("torchprofile", "flop_counter", "trace"),
    "mode": ("auto", "meta", "real"),
    "unpriced": ("fail", "warn"),
    "memory": (False, True),  # also measure peak memory (bytes moved are always recorded)
}


def check_options(options: dict[str, Any]) -> None:
    """Raise ValueError naming the option and its choices when ``options`` holds an unknown name or value."""
    for name, value in options.items():
        if name not in OPTIONS:
            raise ValueError(f"unknown option {name!r}; the options are {', '.join(OPTIONS)}")
        if value not in OPTIONS[name]:
            raise ValueError(f"{name}={value!r} is not one of {', '.join(OPTIONS[name])}")
