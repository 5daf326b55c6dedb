"""Logs that stay readable through an outage.

aiokafka (faust's driver) retries a lost broker every 50 ms and logs each failure at ERROR: a 20 s broker
outage wrote about 1,800 lines on one worker, a 60 s one six figures on a busy worker. ``Repeats``
passes the first line of each kind, then one line per doubling interval (1 s, 2 s, ... up to
``max_interval_s``) saying how many alike were held back; a kind quiet for ``max_interval_s`` starts
afresh. A line's kind is its logger, level and message with the numbers taken out, so "connect to
127.0.0.1:9092 failed (attempt 17)" and "(attempt 18)" are one kind.

>>> import logging
>>> held = Repeats(clock=iter([0.0, 0.1, 0.2, 1.5]).__next__)
>>> line = lambda: logging.LogRecord("aiokafka", logging.ERROR, "", 0, "Unable connect to node %s", (1,), None)
>>> [held.filter(line()) for _ in range(4)]
[True, False, False, True]
"""
from __future__ import annotations

import logging
import re
import time

_NUMBERS = re.compile(r"\d+")
KAFKA_LOG = logging.getLogger("callqa.kafka")  # librdkafka's lines of the worker's own consumers (``logger`` key)


class Repeats(logging.Filter):
    def __init__(self, max_interval_s: float = 60.0, clock=time.monotonic):
        super().__init__()
        self.max_interval_s = max_interval_s
        self.clock = clock
        self._kinds: dict[tuple, list] = {}  # kind -> [next time a line may pass, interval, held back, last seen]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is the handler's to report
            return True
        now = self.clock()
        kind = (record.name, record.levelno, _NUMBERS.sub("#", text))
        state = self._kinds.get(kind)
        if state is None or now - state[3] >= self.max_interval_s:
            if len(self._kinds) > 1000:
                self._kinds.clear()  # bounded: kinds are few unless messages carry free text
            self._kinds[kind] = [now + 1.0, 1.0, 0, now]
            return True
        state[3] = now
        if now < state[0]:
            state[2] += 1
            return False
        if state[2]:
            record.msg, record.args = f"{text} ({state[2]} alike held back in the last {state[1]:.0f} s)", ()
        state[1] = min(state[1] * 2, self.max_interval_s)
        state[0], state[2] = now + state[1], 0
        return True


def hold_repeats() -> None:
    """One ``Repeats`` filter on the root logger and every logger made so far (a record meets the filters
    of the logger that made it: each line is seen once). Call it once the clients' modules are imported."""
    shared = Repeats()
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        if isinstance(logger, logging.Logger) and not any(isinstance(f, Repeats) for f in logger.filters):
            logger.addFilter(shared)
