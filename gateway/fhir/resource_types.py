"""The R4 resource type names, loaded from profiles/resource-types.json."""

from __future__ import annotations

import json
import os
from pathlib import Path


def profiles_dir() -> Path:
    env = os.environ.get("GATEWAY_PROFILES_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "profiles"


RESOURCE_TYPES: frozenset[str] = frozenset(json.loads((profiles_dir() / "resource-types.json").read_text()))
