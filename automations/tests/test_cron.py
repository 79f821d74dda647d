"""Cron parsing, presets and fire times in named zones, including DST changes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from automations import cron

BERLIN = cron.zone("Europe/Berlin")
NEW_YORK = cron.zone("America/New_York")


def _utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def _as_utc(times: list[datetime]) -> list[str]:
    return [t.astimezone(UTC).strftime("%Y-%m-%d %H:%M") for t in times]


def test_a_daily_schedule_keeps_its_local_time_across_the_spring_forward_change():
    # Europe/Berlin moves from UTC+1 to UTC+2 on Sunday 29 March 2026.
    times = cron.parse("0 9 * * *").next_times(_utc(2026, 3, 27, 12), BERLIN, 4)

    assert [t.strftime("%Y-%m-%d %H:%M %Z") for t in times] == [
        "2026-03-28 09:00 CET", "2026-03-29 09:00 CEST", "2026-03-30 09:00 CEST", "2026-03-31 09:00 CEST",
    ]
    assert _as_utc(times) == ["2026-03-28 08:00", "2026-03-29 07:00", "2026-03-30 07:00", "2026-03-31 07:00"]


def test_a_daily_schedule_keeps_its_local_time_across_the_fall_back_change():
    times = cron.parse("0 9 * * *").next_times(_utc(2026, 10, 24, 12), BERLIN, 2)

    assert _as_utc(times) == ["2026-10-25 08:00", "2026-10-26 08:00"]


def test_a_time_skipped_by_the_jump_fires_once_just_after_it():
    times = cron.parse("30 2 * * *").next_times(_utc(2026, 3, 28, 12), BERLIN, 2)

    assert [t.strftime("%Y-%m-%d %H:%M %Z") for t in times] == ["2026-03-29 03:30 CEST", "2026-03-30 02:30 CEST"]


def test_two_times_that_meet_at_the_jump_fire_once():
    # 02:30 doesn't exist on the 29th and lands on 03:30, which is also in the expression.
    times = cron.parse("30 2,3 * * *").next_times(_utc(2026, 3, 28, 12), BERLIN, 3)

    assert _as_utc(times) == ["2026-03-29 01:30", "2026-03-30 00:30", "2026-03-30 01:30"]


def test_a_time_that_happens_twice_fires_once_the_first_time():
    # New York falls back at 02:00 on 1 November 2026: 01:30 happens at 05:30 and 06:30 UTC.
    times = cron.parse("30 1 * * *").next_times(_utc(2026, 10, 31, 12), NEW_YORK, 2)

    assert _as_utc(times) == ["2026-11-01 05:30", "2026-11-02 06:30"]


def test_an_hourly_schedule_has_no_duplicate_or_gap_on_the_change_day():
    day = cron.parse("0 * * * *").times_between(_utc(2026, 3, 28, 23), _utc(2026, 3, 29, 22), BERLIN)

    assert len(day) == 23  # the 02:00 hour doesn't exist that night
    assert len({t.astimezone(UTC) for t in day}) == 23
    instants = [t.astimezone(UTC) for t in day]
    assert all((b - a).total_seconds() == 3600 for a, b in zip(instants, instants[1:], strict=False))


@pytest.mark.parametrize("expression, expected", [
    ("*/15 9-17 * * mon-fri", {"minute": "0,15,30,45", "hour": "9-17", "day_of_week": "1-5"}),
    ("0 0 1 jan,jul *", {"day_of_month": "1", "month_of_year": "1,7"}),
    ("0 12 * * 7", {"day_of_week": "0"}),
    ("@daily", {"minute": "0", "hour": "0", "day_of_month": "*"}),
])
def test_expressions_compile_to_plain_numbers_for_celery(expression, expected):
    fields = cron.parse(expression).celery_fields()

    assert expected.items() <= fields.items()


@pytest.mark.parametrize("expression, message", [
    ("", "Enter a cron expression"),
    ("0 9 * *", "5 fields"),
    ("61 * * * *", "minute: 61 is outside 0-59"),
    ("5-1 * * * *", "runs backwards"),
    ("*/0 * * * *", "step"),
    ("0 9 1 * 1-5", "not both"),
    ("0 0 30 2 *", "never fires"),
    ("0 9 * * funday", "not a number"),
])
def test_it_explains_what_is_wrong_with_an_expression(expression, message):
    with pytest.raises(cron.CronError, match=message):
        cron.parse(expression)


@pytest.mark.parametrize("frequency, time, weekday, day, expression, words", [
    ("daily", "07:30", None, None, "30 7 * * *", "Every day at 07:30"),
    ("weekdays", "9:00", None, None, "0 9 * * 1-5", "Every weekday at 09:00"),
    ("weekly", "18:15", "friday", None, "15 18 * * 5", "Weekly on Friday at 18:15"),
    ("monthly", "09:00", None, 1, "0 9 1 * *", "Monthly on the 1st at 09:00"),
    ("monthly", "09:00", None, 22, "0 9 22 * *", "Monthly on the 22nd at 09:00"),
])
def test_plain_forms_compile_to_cron_and_back(frequency, time, weekday, day, expression, words):
    plain = cron.plain_from(frequency, time, weekday, day)

    assert cron.plain_to_cron(plain) == expression
    assert cron.plain_from_cron(cron.parse(expression)) == plain
    assert cron.describe_schedule(cron.parse(expression)) == words


def test_a_monthly_plain_form_refuses_days_some_months_lack():
    with pytest.raises(cron.CronError, match="1 to 28"):
        cron.plain_from("monthly", "09:00", day=31)


def test_other_expressions_are_described_in_words():
    assert cron.describe_schedule(cron.parse("*/15 9-17 * * 1-5")).startswith("Every 15 minutes")


def test_only_tz_database_names_are_time_zones():
    assert cron.zone("Europe/Berlin").key == "Europe/Berlin"
    for bad in ("Mars/Olympus", "../../etc/passwd", ""):
        with pytest.raises(cron.CronError):
            cron.zone(bad)
