"""Every zoo entry, by name. Listing imports no model library (each entry builds in its own worker)."""

from __future__ import annotations

import fnmatch
import re

from .common import Entry

FAMILIES = ("timm", "transformers", "diffusers", "torchvision")

# The library each family needs (for skipping where it is not installed).
LIBRARY = {"timm": "timm", "transformers": "transformers", "diffusers": "diffusers", "torchvision": "torchvision"}


def all_entries() -> list[Entry]:
    from . import diffusers_models, timm_models, torchvision_models, transformers_models

    out: list[Entry] = []
    for module in (timm_models, transformers_models, diffusers_models, torchvision_models):
        out.extend(module.entries())
    names = [e.name for e in out]
    assert len(names) == len(set(names)), "duplicate zoo entry names"
    return out


def by_name() -> dict[str, Entry]:
    return {e.name: e for e in all_entries()}


def select(patterns: list[str] | None) -> list[Entry]:
    """Entries whose name (``family/model``), family or group matches one of ``patterns``: a glob
    (``timm/vit_*``), a family (``diffusers``) or a substring / regular expression (``llama``)."""
    entries = all_entries()
    if not patterns:
        return entries
    chosen = []
    for e in entries:
        for p in patterns:
            if (fnmatch.fnmatch(e.name, p) or p in (e.family, e.group) or p in e.name
                    or _regex(p, e.name)):
                chosen.append(e)
                break
    return chosen


def _regex(pattern: str, name: str) -> bool:
    try:
        return re.search(pattern, name) is not None
    except re.error:
        return False
