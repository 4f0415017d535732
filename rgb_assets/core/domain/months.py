"""Calendar months as half-open UTC intervals, the time unit of every partition."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from rgb_assets.core.domain.errors import InputError

_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})(?:-01)?$")


@dataclass(frozen=True, order=True)
class Month:
    """One calendar month; ``start`` inclusive, ``end`` exclusive (UTC)."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12:
            raise InputError("month", f"month number {self.month} is not in 1..12")

    @classmethod
    def parse(cls, text: str, field: str = "month") -> Month:
        """Accept ``YYYY-MM`` or Dagster's monthly partition key ``YYYY-MM-01``."""
        m = _MONTH_RE.match(str(text).strip())
        if not m:
            raise InputError(field, f"{text!r} is not a month (expected YYYY-MM or YYYY-MM-01)")
        return cls(int(m.group(1)), int(m.group(2)))

    @classmethod
    def of(cls, d: date | datetime) -> Month:
        return cls(d.year, d.month)

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return self.next().start

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def contains(self, when: datetime) -> bool:
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        return self.start <= when < self.end

    @property
    def key(self) -> str:
        """``YYYY-MM``: used in paths and item ids."""
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def partition_key(self) -> str:
        """Dagster's MonthlyPartitionsDefinition key, ``YYYY-MM-01``."""
        return f"{self.key}-01"

    def stac_interval(self) -> str:
        """Closed STAC datetime interval covering exactly this month."""
        last = self.end.timestamp() - 1e-3
        end = datetime.fromtimestamp(last, tz=UTC)
        return f"{self.start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%S.%f}"[:-3] + "Z"

    def __str__(self) -> str:
        return self.key


def months_between(start: Month, end: Month) -> list[Month]:
    """Months from ``start`` to ``end`` inclusive."""
    out, cur = [], start
    while cur <= end:
        out.append(cur)
        cur = cur.next()
    return out
