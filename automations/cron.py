"""Five-field cron expressions: parsing, the plain-language presets that compile to them, and the
fire times of an expression in a named time zone.

The same functions give the fire times the UI shows and decide whether a wake-up from beat starts
a run, so the two can't disagree. Beat (django-celery-beat's crontab) still wakes the task at the
time; a wake-up that is early or repeated (a beat restart, a duplicate delivery) starts nothing,
and the periodic tick fires an occurrence beat missed (beat was down).

Semantics, in the schedule's own time zone:
- a wall-clock time skipped by a DST jump fires as if the clock had not jumped (02:30 on a
  spring-forward night fires at 03:30 local, the same instant);
- a wall-clock time that happens twice (fall back) fires once, the first time;
- day of month and day of week can't both be restricted: cron dialects disagree about whether
  that means "either" (Vixie cron) or "both" (Celery), so the expression is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

from cron_descriptor import ExpressionDescriptor, Options
from cron_descriptor.Exception import FormatException

MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
WEEKDAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
WEEKDAY_LABELS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
# Long enough to find a 29 February (every 4 years, except 2100).
HORIZON_DAYS = 366 * 9


class CronError(ValueError):
    pass


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0


_FIELDS = (
    _FieldSpec("minute", 0, 59),
    _FieldSpec("hour", 0, 23),
    _FieldSpec("day of month", 1, 31),
    _FieldSpec("month", 1, 12, tuple(MONTH_NAMES), 1),
    # 7 is accepted as Sunday, as in most crons.
    _FieldSpec("day of week", 0, 7, tuple(WEEKDAY_NAMES), 0),
)


def _value(text: str, spec: _FieldSpec) -> int:
    lowered = text.lower()
    if spec.names and lowered in spec.names:
        return spec.names.index(lowered) + spec.name_base
    if not text.isdigit():
        raise CronError(f"{spec.name}: {text!r} is not a number{' or a name' if spec.names else ''}.")
    number = int(text)
    if not spec.low <= number <= spec.high:
        raise CronError(f"{spec.name}: {number} is outside {spec.low}-{spec.high}.")
    return number


def _parse_field(text: str, spec: _FieldSpec) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise CronError(f"{spec.name}: empty list item in {text!r}.")
        body, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) < 1:
                raise CronError(f"{spec.name}: step {step_text!r} must be a positive number.")
            step = int(step_text)
        if body == "*":
            low, high = spec.low, spec.high
        elif "-" in body:
            start, _, end = body.partition("-")
            low, high = _value(start, spec), _value(end, spec)
            if low > high:
                raise CronError(f"{spec.name}: range {body!r} runs backwards.")
        else:
            low = _value(body, spec)
            high = spec.high if step_text else low
        values.update(range(low, high + 1, step))
    if spec.name == "day of week" and 7 in values:
        values.discard(7)
        values.add(0)
    return frozenset(values)


def _compact(values: frozenset[int], low: int, high: int) -> str:
    """Numbers as Celery's crontab reads them: '*' for all, else runs as 'a-b', joined by commas."""
    if values == frozenset(range(low, high + 1)):
        return "*"
    ordered = sorted(values)
    parts: list[str] = []
    start = previous = ordered[0]
    for number in ordered[1:] + [None]:
        if number is not None and number == previous + 1:
            previous = number
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        if number is not None:
            start = previous = number
    return ",".join(parts)


@dataclass(frozen=True)
class Cron:
    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday

    def celery_fields(self) -> dict[str, str]:
        """The same schedule as django-celery-beat's CrontabSchedule fields, in plain numbers."""
        return {
            "minute": _compact(self.minutes, 0, 59),
            "hour": _compact(self.hours, 0, 23),
            "day_of_month": _compact(self.days, 1, 31),
            "month_of_year": _compact(self.months, 1, 12),
            "day_of_week": _compact(self.weekdays, 0, 6),
        }

    def matches_date(self, day: date) -> bool:
        # isoweekday: Monday=1 ... Sunday=7 → cron's Sunday=0.
        return day.month in self.months and day.day in self.days and day.isoweekday() % 7 in self.weekdays

    def _times(self) -> list[tuple[int, int]]:
        return [(h, m) for h in sorted(self.hours) for m in sorted(self.minutes)]

    def iter_after(self, after: datetime, tz: ZoneInfo) -> Iterator[datetime]:
        """Fire times strictly after `after`, in order, as aware datetimes in `tz`."""
        times = self._times()
        first_day = after.astimezone(tz).date() - timedelta(days=1)
        seen_last: datetime | None = None
        for offset in range(HORIZON_DAYS):
            day = first_day + timedelta(days=offset)
            if not self.matches_date(day):
                continue
            # Skipped wall times resolve past the jump, so a day's instants are sorted again.
            instants = sorted({resolve(datetime(day.year, day.month, day.day, h, m), tz) for h, m in times})
            for instant in instants:
                if instant <= after or (seen_last is not None and instant <= seen_last):
                    continue
                seen_last = instant
                yield instant

    def next_times(self, after: datetime, tz: ZoneInfo, count: int = 5) -> list[datetime]:
        result = []
        for instant in self.iter_after(after, tz):
            result.append(instant)
            if len(result) == count:
                break
        return result

    def times_between(self, start: datetime, end: datetime, tz: ZoneInfo) -> list[datetime]:
        """Fire times in (start, end]."""
        result = []
        for instant in self.iter_after(start, tz):
            if instant > end:
                break
            result.append(instant)
        return result


def resolve(wall: datetime, tz: ZoneInfo) -> datetime:
    """A naive local time as an instant. fold=0 picks the first of a repeated time and, for a
    time skipped by a jump, the offset from before the jump (so it lands just past it)."""
    return wall.replace(tzinfo=tz).astimezone(UTC).astimezone(tz)


def parse(expression: str) -> Cron:
    text = " ".join((expression or "").split()).lower()
    if not text:
        raise CronError("Enter a cron expression, e.g. '0 9 * * 1-5'.")
    text = MACROS.get(text, text)
    parts = text.split(" ")
    if len(parts) != 5:
        raise CronError(
            f"A cron expression has 5 fields (minute hour day-of-month month day-of-week); got {len(parts)}."
        )
    if len(text) > 100:
        raise CronError("The cron expression is too long (100 characters at most).")
    minutes, hours, days, months, weekdays = (_parse_field(p, s) for p, s in zip(parts, _FIELDS, strict=True))
    cron = Cron(text, minutes, hours, days, months, weekdays)
    if days != frozenset(range(1, 32)) and weekdays != frozenset(range(7)):
        raise CronError(
            "Restrict the day of month or the day of week, not both (cron dialects disagree about what "
            "that means). Use '*' for one of them."
        )
    if not any(cron.matches_date(date(2024, m, d)) for m in months for d in days if _exists(2024, m, d)):
        raise CronError("This expression never fires (no month has that day).")
    return cron


def _exists(year: int, month: int, day: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def describe(cron: Cron) -> str:
    options = Options()
    options.use_24hour_time_format = True
    try:
        return ExpressionDescriptor(cron.expression, options).get_description()
    except (FormatException, ValueError, IndexError, KeyError):
        return cron.expression


# --------------------------------------------------------------------------- time zones


@lru_cache(maxsize=1)
def timezone_names() -> tuple[str, ...]:
    return tuple(sorted(available_timezones()))


def zone(name: str) -> ZoneInfo:
    """A ZoneInfo for an IANA name; only names from the tz database (no file paths)."""
    if name not in set(timezone_names()):
        raise CronError(f"Unknown time zone {name!r}. Use an IANA name such as 'Europe/Berlin' or 'UTC'.")
    return ZoneInfo(name)


# --------------------------------------------------------------------------- plain-language presets

FREQUENCIES = {
    "daily": "Every day",
    "weekdays": "Every weekday (Monday to Friday)",
    "weekly": "Every week",
    "monthly": "Every month",
}
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
MONTHLY_MAX_DAY = 28  # so a monthly preset fires every month; other days need a cron expression


@dataclass(frozen=True)
class Plain:
    frequency: str
    time: str  # HH:MM
    weekday: int | None = None  # 0 = Sunday, for weekly
    day: int | None = None  # 1-28, for monthly

    def as_dict(self) -> dict:
        data: dict = {"frequency": self.frequency, "time": self.time}
        if self.frequency == "weekly":
            data["weekday"] = WEEKDAY_NAMES[self.weekday or 0]
        if self.frequency == "monthly":
            data["day"] = self.day
        return data


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def plain_from(frequency: str, time: str, weekday: str | int | None = None, day: int | None = None) -> Plain:
    if frequency not in FREQUENCIES:
        raise CronError(f"Unknown frequency {frequency!r}. One of: {', '.join(FREQUENCIES)}.")
    match = _TIME.match((time or "").strip())
    if not match:
        raise CronError("Time must be HH:MM in 24-hour form, e.g. 09:00.")
    hh, mm = int(match.group(1)), int(match.group(2))
    weekday_number = None
    if frequency == "weekly":
        if isinstance(weekday, str):
            key = weekday.strip().lower()[:3]
            if key not in WEEKDAY_NAMES:
                raise CronError("Weekday must be a day name such as 'monday'.")
            weekday_number = WEEKDAY_NAMES.index(key)
        elif isinstance(weekday, int) and 0 <= weekday <= 6:
            weekday_number = weekday
        else:
            raise CronError("A weekly schedule needs a weekday.")
    day_number = None
    if frequency == "monthly":
        if not isinstance(day, int) or not 1 <= day <= MONTHLY_MAX_DAY:
            raise CronError(f"A monthly schedule needs a day from 1 to {MONTHLY_MAX_DAY}; "
                            "for later days use a cron expression.")
        day_number = day
    return Plain(frequency, f"{hh:02d}:{mm:02d}", weekday_number, day_number)


def plain_to_cron(plain: Plain) -> str:
    hh, mm = (int(part) for part in plain.time.split(":"))
    return {
        "daily": f"{mm} {hh} * * *",
        "weekdays": f"{mm} {hh} * * 1-5",
        "weekly": f"{mm} {hh} * * {plain.weekday}",
        "monthly": f"{mm} {hh} {plain.day} * *",
    }[plain.frequency]


def plain_describe(plain: Plain) -> str:
    if plain.frequency == "daily":
        return f"Every day at {plain.time}"
    if plain.frequency == "weekdays":
        return f"Every weekday at {plain.time}"
    if plain.frequency == "weekly":
        return f"Weekly on {WEEKDAY_LABELS[plain.weekday or 0]} at {plain.time}"
    return f"Monthly on the {_ordinal(plain.day or 1)} at {plain.time}"


def plain_from_cron(cron: Cron) -> Plain | None:
    """The preset a cron expression came from, if it is one (so forms can show it that way)."""
    if len(cron.minutes) != 1 or len(cron.hours) != 1 or cron.months != frozenset(range(1, 13)):
        return None
    time = f"{next(iter(cron.hours)):02d}:{next(iter(cron.minutes)):02d}"
    all_days = cron.days == frozenset(range(1, 32))
    all_weekdays = cron.weekdays == frozenset(range(7))
    if all_days and all_weekdays:
        return Plain("daily", time)
    if all_days and cron.weekdays == frozenset(range(1, 6)):
        return Plain("weekdays", time)
    if all_days and len(cron.weekdays) == 1:
        return Plain("weekly", time, weekday=next(iter(cron.weekdays)))
    if all_weekdays and len(cron.days) == 1 and next(iter(cron.days)) <= MONTHLY_MAX_DAY:
        return Plain("monthly", time, day=next(iter(cron.days)))
    return None


def describe_schedule(cron: Cron) -> str:
    plain = plain_from_cron(cron)
    return plain_describe(plain) if plain else describe(cron)
