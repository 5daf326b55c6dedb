"""Local time per site: each site's IANA time zone, and the conversions the core's local-time rules use.

The store and every event keep UTC instants; a site's zone only decides which local day, hour and
weekday an instant falls in: shift bands, weekdays of coverage cells and peak hours (the sampler), the
review queue's day, test-call slots, and KPI windows of whole days. A window of ``N`` × 86 400 s starts at
the site's local midnight (kept as its UTC instant): on a daylight-saving day it is 23 or 25 hours long,
and its ``window_end`` is the next local midnight. Shorter windows stay aligned to UTC (so an hour window
is a local hour where the offset is whole hours; at +05:30 it spans two local half hours).

Conversions are cached (``kpi.keys_at`` runs for every event): a zone's UTC offset per UTC quarter hour
(zones change their offset on a quarter hour) and each local midnight per zone and day.

>>> clock = SiteClock({"bj": "Asia/Shanghai"})
>>> from schemas import format_ms, time_ms
>>> format_ms(clock.window_start("bj", 86400, time_ms("2024-03-04T17:00:00.000Z")))
'2024-03-04T16:00:00.000Z'
>>> clock.name("bj"), clock.name("elsewhere")
('Asia/Shanghai', 'UTC')
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY_MS = 86_400_000
QUARTER_MS = 900_000
EPOCH = date(1970, 1, 1).toordinal()
_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Universal", "Universal", "Etc/Zulu", "Zulu",
                        "Etc/GMT", "GMT", "Etc/GMT0", "GMT0", "Etc/Greenwich", "Greenwich"})
_CACHE_LIMIT = 200_000


def zone(name: str) -> ZoneInfo:
    """The IANA zone of that name; ValueError (one line) when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. Asia/Shanghai)") from None


class SiteClock:
    """The zone of each site (``zones``; ``default`` for sites not listed) and local-time arithmetic
    on epoch milliseconds. Compared, hashed and pickled by its zones (caches are not state)."""

    def __init__(self, zones: Mapping[str, str] | None = None, default: str = "UTC"):
        self.zones = dict(sorted((zones or {}).items()))
        self.default = default
        self._tz: dict[str, ZoneInfo | None] = {}
        for name in (default, *self.zones.values()):
            self._tz[name] = zone(name)
        self.utc = all(name in _UTC_NAMES for name in self._tz)  # the fast path: everything is UTC
        self._offsets: dict[tuple[str, int], int] = {}
        self._midnights: dict[tuple[str, int], int] = {}

    # -- identity ---------------------------------------------------------------------------------
    def __eq__(self, other) -> bool:
        return isinstance(other, SiteClock) and (self.zones, self.default) == (other.zones, other.default)

    def __hash__(self) -> int:
        return hash((tuple(self.zones.items()), self.default))

    def __repr__(self) -> str:
        return f"SiteClock({self.zones!r}, default={self.default!r})"

    def __getstate__(self) -> dict:
        return {"zones": self.zones, "default": self.default}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["zones"], state["default"])

    # -- zones ------------------------------------------------------------------------------------
    def name(self, site: str | None) -> str:
        """The zone name of a site."""
        return self.zones.get(site or "", self.default)

    def known(self, name: str | None) -> str | None:
        """``name`` when it is a usable zone (e.g. a profile's ``shift.timezone``), else None."""
        if not name or not isinstance(name, str):
            return None
        if name not in self._tz:
            if len(self._tz) > 1000:
                return None
            try:
                self._tz[name] = zone(name)
            except ValueError:
                self._tz[name] = None
        return name if self._tz[name] is not None else None

    def offset_ms(self, zone_name: str, t_ms: int) -> int:
        """The zone's UTC offset at ``t_ms`` (cached per UTC quarter hour)."""
        key = (zone_name, t_ms // QUARTER_MS)
        off = self._offsets.get(key)
        if off is None:
            if len(self._offsets) > _CACHE_LIMIT:
                self._offsets.clear()
            tz = self._tz.get(zone_name) or zone(zone_name)
            moment = datetime.fromtimestamp(key[1] * QUARTER_MS / 1000, UTC).astimezone(tz)
            off = self._offsets[key] = int(moment.utcoffset().total_seconds() * 1000)
        return off

    # -- local time of an instant -----------------------------------------------------------------
    def local_ms(self, site: str | None, t_ms: int, zone_name: str | None = None) -> int:
        """The wall-clock time of ``t_ms`` at the site (or in ``zone_name``), as epoch ms of that wall clock:
        ``// DAY_MS`` is the local epoch day, ``// 3_600_000 % 24`` the local hour."""
        return t_ms + self.offset_ms(zone_name or self.name(site), t_ms)

    def local_day(self, site: str | None, t_ms: int) -> int:
        """The site's local date of ``t_ms``, as days since 1970-01-01."""
        return self.local_ms(site, t_ms) // DAY_MS

    def local_date(self, site: str | None, t_ms: int) -> str:
        """The site's local date of ``t_ms`` (YYYY-MM-DD)."""
        return date.fromordinal(EPOCH + self.local_day(site, t_ms)).isoformat()

    def midnight(self, site: str | None, day: int, zone_name: str | None = None) -> int:
        """The UTC instant (ms) the site's local day ``day`` (days since 1970-01-01) starts: its local
        midnight (or, when the zone skips midnight, the first instant of that day)."""
        name = zone_name or self.name(site)
        key = (name, day)
        at = self._midnights.get(key)
        if at is None:
            if len(self._midnights) > _CACHE_LIMIT:
                self._midnights.clear()
            d = date.fromordinal(EPOCH + day)
            tz = self._tz.get(name) or zone(name)
            at = self._midnights[key] = int(datetime(d.year, d.month, d.day, tzinfo=tz).timestamp() * 1000)
        return at

    def at_local(self, site: str | None, day: date, hour: int, minute: int = 0) -> int:
        """The UTC instant (ms) of a local wall-clock time at the site."""
        tz = self._tz.get(self.name(site)) or zone(self.name(site))
        return int(datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz).timestamp() * 1000)

    # -- KPI windows ------------------------------------------------------------------------------
    def window_start(self, site: str, size_s: int, t_ms: int) -> int:
        """Start of the window of ``size_s`` seconds holding ``t_ms``: whole days from the site's local
        midnight (days counted from 1970-01-01, as UTC windows are), anything shorter aligned to UTC."""
        if self.utc or size_s % 86400:
            return t_ms - t_ms % (size_s * 1000)
        days = size_s // 86400
        day = self.local_day(site, t_ms)
        return self.midnight(site, day - day % days)

    def window_end(self, site: str, size_s: int, start_ms: int) -> int:
        """End of the window starting at ``start_ms``: the local midnight ``size_s`` days on for whole
        days (a daylight-saving day is 23 or 25 hours), else ``start + size``."""
        if self.utc or size_s % 86400:
            return start_ms + size_s * 1000
        end = self.midnight(site, self.local_day(site, start_ms) + size_s // 86400)
        return end if end > start_ms else start_ms + size_s * 1000

    def month(self, site: str | None, day: int) -> tuple[str, int, int]:
        """Of a local day of the site: its month (YYYY-MM) and the UTC instants the month starts and ends."""
        d = date.fromordinal(EPOCH + day)
        first = date(d.year, d.month, 1).toordinal() - EPOCH
        following = date(d.year + d.month // 12, d.month % 12 + 1, 1).toordinal() - EPOCH
        return f"{d.year:04d}-{d.month:02d}", self.midnight(site, first), self.midnight(site, following)


UTC_CLOCK = SiteClock()
