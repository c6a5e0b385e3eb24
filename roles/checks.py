"""Value checks the roles share (pure: no pyinfra, no role imports)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


def need_sha256(values: Mapping[str, Any], key: str, why: str) -> list[str]:
    """``key`` must hold a sha256 (64 hex): ``[]``, or the one problem (without the host)."""
    value = values.get(key)
    if not value:
        return [f"key {key}: not set; {why}"]
    if not SHA256.match(str(value)):
        return [f"key {key}: {value!r} is not a sha256 (64 hex)"]
    return []
