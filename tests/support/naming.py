"""Names no other test uses, so tests sharing one server stay out of each other's way."""
from __future__ import annotations

import uuid


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"
