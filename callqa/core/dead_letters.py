"""Dead-letter records: rejected input with the reason and the raw payload, nothing lost."""
from __future__ import annotations

import time

from schemas import format_ms


def dead_letter(reason: str, payload: bytes | str, origin: str, position: str) -> dict:
    """One dead-letter row; ``origin``/``position`` say where the input came from (topic/partition, offset or file, line)."""
    if isinstance(payload, bytes):
        payload = payload.decode("utf-8", errors="backslashreplace")
    return {"received_at": format_ms(int(time.time() * 1000)), "origin": origin, "position": position,
            "reason": reason, "payload": payload}
