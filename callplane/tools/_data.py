"""Demo data for the tools, loaded once from JSON files in callplane/data."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

_DIR = Path(__file__).resolve().parent.parent / "data"


@cache
def load(name: str) -> Any:
    return json.loads((_DIR / f"{name}.json").read_text(encoding="utf-8"))
