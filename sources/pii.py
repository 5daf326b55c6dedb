"""Caller numbers are personal data: they are replaced at the edge by a keyed hash and never logged."""
from __future__ import annotations

import hashlib
import hmac
import logging
import re

log = logging.getLogger(__name__)
DEVELOPMENT_KEY = "callqa-development-key-not-secret"


class CallerHasher:
    """HMAC-SHA256 of the normalized number, 128 bits as hex: the same caller gives the same hash."""

    def __init__(self, key: str):
        if not key:
            log.warning("CALLQA_CALLER_HASH_KEY is not set: caller hashes use the development key")
            key = DEVELOPMENT_KEY
        self._key = key.encode()

    def __call__(self, number: str | None) -> str | None:
        digits = re.sub(r"[^0-9A-Za-z]", "", number or "")
        if not digits or digits.strip("0") == "" or digits.lower() in ("anonymous", "unknown", "none"):
            return None
        return hmac.new(self._key, digits.encode(), hashlib.sha256).hexdigest()[:32]

    def scrub(self, text: str) -> str:
        """``text`` (a source line an adapter could not read, kept as a dead letter) with every run of 7 to
        15 digits that does not open the line — a phone number, or a customer id — replaced by
        ``#<its hash>``: what cannot be parsed cannot be told apart, so all of them go."""
        return NUMBER.sub(lambda m: m.group(1) + "#" + (self(m.group(2)) or "")[:16], text)


NUMBER = re.compile(r"([^\w.]\+?)(\d{7,15})(?![\w.])")
