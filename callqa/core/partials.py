"""KPI windows as partial sums: each stage partition keeps its own share; the window stage adds them up.

A stage partition (of the per-event stage, or of the FCR stage) applies KPI deltas to its own
``PartialWindows``. Each delta carries a *tag* — ``[input offset, n]``, the position of the input that
caused it — and a window applies a tag at most once, so re-processing input after a restart never
counts twice. A partial is sent on as an absolute value with a version (how many deltas it holds);
``WindowSums`` keeps the newest version of every partial and adds them: a repeated or replayed
partial changes nothing, whatever order partials arrive in.

A partial past ``retention_ms`` leaves a tombstone with its last tag for one more retention: input at or
before that tag (re-processed after a crash part-way through saving, when the windows were saved
and the calls not yet) changes nothing; later input starts a new *generation* (named by the tag that
created it), so an old generation already summed is kept, not overwritten.

>>> from callqa.core.kpi import KpiConfig
>>> mine, sums = PartialWindows({}, 10**12, "events/0"), WindowSums({}, KpiConfig())
>>> mine.apply("site|S|S|900|0", {"offered": 1}, [5, 0]); mine.apply("site|S|S|900|0", {"offered": 1}, [5, 0])
>>> [(key, version, counters) for key, _, version, counters in mine.drain()]
[('site|S|S|900|0', 1, {'offered': 1})]
>>> sums.apply("site|S|S|900|0", "events/0@5.0", 1, {"offered": 1}), sums.apply("site|S|S|900|0", "events/0@5.0", 1, {"offered": 1})
(True, False)
>>> sums.drain()[0]["offered"]
1
"""
from __future__ import annotations

from collections.abc import MutableMapping

from . import kpi
from .expiry import Expiry


JUDGED = "judged"  # in a window of the window stage: the figures the threshold rules judged it on


def per_window(deltas: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """``deltas`` added up per window, in the order windows first appear: the deltas of one input go
    under one tag, and a window takes a tag once (a sweep that closes two calls of one window makes
    two deltas for it).

    >>> per_window([("w1", {"incomplete": 1}), ("w2", {"offered": 1}), ("w1", {"incomplete": 1})])
    [('w1', {'incomplete': 2}), ('w2', {'offered': 1})]
    """
    out: dict[str, dict] = {}
    for key, delta in deltas:
        held = out.get(key)
        if held is None:
            out[key] = delta
        else:
            total = kpi._copy(held)  # deltas may be shared between windows: never changed in place
            kpi._merge(total, delta)
            out[key] = total
    return list(out.items())


def window_end_ms(key: str) -> int:
    _, _, _, size, start = key.rsplit("|", 4)
    return int(start) + int(size) * 1000


class _Retained:
    """Windows kept for ``retention_ms`` after they end; then a tombstone (``{"gone": ...}``) for one
    more retention, then nothing. ``dirty``: windows changed since the last drain; ``_final``: what
    the next drain still sends for changed windows swept before it."""

    def __init__(self, windows: MutableMapping[str, dict], retention_ms: int):
        self.windows = windows
        self.retention_ms = retention_ms
        self.dirty: set[str] = set()
        self._final: list = []
        self.expiry = Expiry()
        self.expiry.rebuild((k, self._due(k, w)) for k, w in windows.items())

    def _due(self, key: str, w: dict) -> int:
        return window_end_ms(key) + self.retention_ms * (2 if "gone" in w else 1)

    def drain(self) -> list:
        """What changed since the last drain, per window (``_last``): (key, generation, version, counters)
        of a partial, the KPI row of a sum."""
        out = self._final + [self._last(k, self.windows[k]) for k in sorted(self.dirty)]
        self._final = []
        self.dirty.clear()
        return out

    def _last(self, key: str, w: dict):
        """What a drain sends for a changed window."""
        raise NotImplementedError

    def _tombstone(self, w: dict) -> dict:
        raise NotImplementedError

    def _ahead(self, w: dict, tag: list[int]) -> bool:
        """Whether ``w`` holds input after ``tag``."""
        return False

    def sweep(self, watermark_ms: int, tag: list[int] | None = None) -> None:
        """Replace every window past its retention by a tombstone, and forget tombstones one retention
        later. Which windows leave depends on the watermark alone (not on when batches were drained),
        so a replay re-creates exactly the windows the first run did; a swept window's last change is
        still sent by the next drain. ``tag``: the input being applied; a window holding later input
        (saved ahead of it by a crash part-way through a save) is left until the input has passed it,
        as on the first run."""
        for key in list(self.expiry.due(watermark_ms)):
            w = self.windows.get(key)
            if w is None or self._due(key, w) > watermark_ms:
                continue  # pushed again when it was re-created or tombstoned: that entry comes later
            if tag is not None and self._ahead(w, tag):
                self.expiry.push(key, self._due(key, w))
                continue
            if "gone" in w:
                del self.windows[key]
                continue
            if key in self.dirty:
                self._final.append(self._last(key, w))
                self.dirty.discard(key)
            self.windows[key] = self._tombstone(w)
            self.expiry.push(key, self._due(key, self.windows[key]))


class PartialWindows(_Retained):
    """One partition's share of KPI windows: ``{key: {"c": counters, "g": generation, "n": version, "t": tag}}``,
    or ``{key: {"gone": tag}}`` for a window past its retention (its last tag)."""

    def __init__(self, windows: MutableMapping[str, dict], retention_ms: int, source: str):
        super().__init__(windows, retention_ms)
        self.source = source

    def apply(self, key: str, delta: dict, tag: list[int]) -> None:
        """Add ``delta`` unless this window already holds the input at ``tag`` (or a later one)."""
        w = self.windows.get(key)
        if w is not None and "gone" in w and tag <= w["gone"]:
            return  # input the swept window had taken (re-processed after a crash part-way through a save)
        if w is None or "gone" in w:
            w = {"c": {}, "g": f"{self.source}@{tag[0]}.{tag[1]}", "n": 0, "t": tag}
            self.expiry.push(key, self._due(key, w))
        elif tag <= w["t"]:
            return
        kpi._merge(w["c"], delta)
        w["n"] += 1
        w["t"] = tag
        self.windows[key] = w
        self.dirty.add(key)

    def _last(self, key: str, w: dict) -> tuple[str, str, int, dict]:
        return key, w["g"], w["n"], w["c"]

    def _tombstone(self, w: dict) -> dict:
        return {"gone": w["t"]}

    def _ahead(self, w: dict, tag: list[int]) -> bool:
        return (w["gone"] if "gone" in w else w["t"]) > tag


class WindowSums(_Retained):
    """The window stage: the newest version of every partial of a window, and the KPI row of their sum
    (``{key: {generation: [version, counters]}}``, or ``{key: {"gone": True}}`` past its retention). A
    window judged by the KPI-threshold rules also keeps the figures it was judged on (``JUDGED``)."""

    def __init__(self, windows: MutableMapping[str, dict], config: kpi.KpiConfig):
        super().__init__(windows, config.window_retention_ms)
        self.clock = config.clock

    def apply(self, key: str, generation: str, version: int, counters: dict) -> bool:
        """Record a partial; False when this version (or a newer one) is already held."""
        w = self.windows.get(key)
        if w is None:
            w = {}
            self.expiry.push(key, self._due(key, w))
        elif "gone" in w:
            return False  # past its retention: a replayed partial (a later one could only make a partial row)
        held = w.get(generation)
        if held is not None and held[0] >= version:
            return False
        w[generation] = [version, counters]
        self.windows[key] = w
        self.dirty.add(key)
        return True

    def row(self, key: str) -> dict:
        acc: dict = {}
        version = 0
        for generation, held in self.windows[key].items():
            if generation != JUDGED:
                kpi._merge(acc, held[1])
                version += held[0]
        acc["version"] = version
        return kpi.row(key, acc, self.clock)

    def _last(self, key: str, w: dict) -> dict:
        return self.row(key)

    def _tombstone(self, w: dict) -> dict:
        return {"gone": True}
