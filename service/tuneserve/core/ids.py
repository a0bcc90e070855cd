"""Resource ids: a kind prefix and 16 random hex digits (`ds-…`, `job-…`, `model-…`), as hosted APIs use."""

from __future__ import annotations

import re
import secrets

_ID = re.compile(r"^(ds|job|model)-[0-9a-f]{16}$")


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


def looks_like_id(value: str) -> bool:
    return bool(_ID.match(value))
