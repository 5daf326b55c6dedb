"""Caller numbers are personal data: they are replaced at the edge by a keyed hash and never logged."""
from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time

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

    def scrub(self, text: str, epoch_opening: bool = False) -> str:
        """``text`` (a source line an adapter could not read, kept as a dead letter; a free-text reason)
        with every number of 7 or more digits — also written with spaces, dots, dashes or brackets, and
        after letters (``tel+49 151 …``) — replaced by ``#<its hash>``, except ISO dates and, with
        ``epoch_opening`` (a queue_log file), a ``|``-separated line's opening number when it can be an
        epoch (plain digits, not after a year from now): what cannot be parsed cannot be told apart, so
        all of them go."""
        def hashed(opening: bool):
            def replace(m: re.Match) -> str:
                found = m.group(0)
                if sum(c.isdigit() for c in found) < 7 or (opening and m.start() == 0 and _epoch_like(found)):
                    return found
                return "#" + (self(found) or "")[:16]
            return replace

        parts = DATE_TIME.split(text)  # dates and times are kept as they are; numbers between them go
        epoch = epoch_opening and "|" in text
        return "".join(part if i % 2 else PHONE.sub(hashed(i == 0 and epoch), part) for i, part in enumerate(parts))


PHONE = re.compile(r"(?<!\d)\+?\d(?:[\d .()/\u00a0\u2007\u2009\u202f\u2010-\u2015\u2212-]*\d)?")  # digits, maybe with the separators numbers are written with
DATE_TIME = re.compile(r"((?<!\d)(?:19|20)\d{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?Z?)?(?!\d))")


def _epoch_like(found: str) -> bool:
    """Whether a line's opening number can be a queue_log epoch: plain digits, not after a year from now."""
    return found.isdigit() and int(found) <= time.time() + 366 * 86400
