"""Schedules: the beat entry kept in sync, firing on a frozen clock, retries with backoff and the
owner's email through a real SMTP connection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django_celery_beat.models import CrontabSchedule, PeriodicTask
from django_celery_beat.schedulers import ModelEntry

from agents import services as agent_services
from agents.models import Run
from automations import services
from automations.models import Schedule, ScheduleFiring
from automations.tests.runs import finish
from config.celery import app as celery_app

# No DST in Tokyo, so these tests mean the same thing on any day they run.
TOKYO = "Asia/Tokyo"


@pytest.fixture
def make_schedule(organization, owner, agent):
    def make(**overrides) -> Schedule:
        fields = {"name": "Morning report", "goal": "Write the morning report.", "cron": "0 9 * * 1-5",
                  "timezone": TOKYO, "context": {"team": "ops"}} | overrides
        return services.schedule_create(organization=organization, agent=agent, actor=owner, **fields)

    return make


def _attempts(schedule: Schedule) -> list[ScheduleFiring]:
    return list(schedule.firings.order_by("attempt"))


# ----------------------------------------------------------------------------- the beat entry


def test_creating_a_schedule_registers_a_beat_entry_with_the_same_timetable(make_schedule):
    schedule = make_schedule(cron="*/15 9-17 * * mon-fri")

    task = PeriodicTask.objects.get(id=schedule.periodic_task_id)
    assert task.task == "automations.fire_schedule"
    assert task.kwargs == f'{{"schedule_id": "{schedule.id}"}}'
    assert task.enabled
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("0,15,30,45", "9-17", "1-5")
    assert str(task.crontab.timezone) == TOKYO
    assert schedule.description == "Every 15 minutes, between 09:00 and 17:59, Monday through Friday"
    assert schedule.next_fire_at == services.schedule_next_fire_times(schedule)[0]


def test_editing_the_timetable_moves_the_beat_entry_and_disabling_turns_it_off(make_schedule, owner):
    schedule = make_schedule()

    schedule = services.schedule_update(schedule=schedule, actor=owner, cron="30 7 * * *", timezone="Europe/Berlin")
    task = PeriodicTask.objects.select_related("crontab").get(id=schedule.periodic_task_id)
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("30", "7", "*")
    assert str(task.crontab.timezone) == "Europe/Berlin"
    assert schedule.description == "Every day at 07:30"

    schedule = services.schedule_set_enabled(schedule=schedule, enabled=False, actor=owner)
    assert not PeriodicTask.objects.get(id=schedule.periodic_task_id).enabled
    assert schedule.next_fire_at is None
    assert services.schedule_next_fire_times(schedule) == []


def test_deleting_a_schedule_removes_its_beat_entry(make_schedule, owner):
    schedule = make_schedule()
    task_id, crontab_id = schedule.periodic_task_id, schedule.periodic_task.crontab_id

    services.schedule_delete(schedule=schedule, actor=owner)

    assert not PeriodicTask.objects.filter(id=task_id).exists()
    assert not CrontabSchedule.objects.filter(id=crontab_id).exists()


def test_deleting_the_agent_also_removes_the_beat_entries_of_its_schedules(make_schedule, agent, owner):
    task_id = make_schedule().periodic_task_id

    agent_services.agent_delete(agent=agent, actor=owner)

    assert not PeriodicTask.objects.filter(id=task_id).exists()


def test_it_refuses_bad_schedules_field_by_field(organization, owner, agent, make_agent, other_organization, outsider):
    foreign_agent = make_agent("Theirs", other_organization)
    cases = [
        ({"cron": "0 9 * *"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"context": ["not", "an", "object"]}, "context"),
        ({"goal": "   "}, "goal"),
        ({"max_retries": 11}, "max_retries"),
        ({"agent": foreign_agent}, "agent"),
        ({"owner": outsider}, "owner"),
    ]
    for override, field in cases:
        fields = {"name": "S", "goal": "Go.", "cron": "0 9 * * *", "agent": agent} | override
        with pytest.raises(ValidationError) as caught:
            services.schedule_create(organization=organization, actor=owner, **fields)
        assert field in caught.value.message_dict, override
    assert not Schedule.objects.exists()
    assert not PeriodicTask.objects.filter(task="automations.fire_schedule").exists()


def test_two_schedules_of_one_agent_cannot_share_a_name(make_schedule):
    make_schedule()

    with pytest.raises(services.NameTaken):
        make_schedule()


# ----------------------------------------------------------------------------- firing on a frozen clock


def test_the_beat_entry_is_due_at_the_schedule_time_on_a_frozen_clock(make_schedule, owner):
    schedule = make_schedule()
    first, second = services.schedule_next_fire_times(schedule, count=2)
    # Beat last ran the task an hour before the coming occurrence.
    PeriodicTask.objects.filter(id=schedule.periodic_task_id).update(last_run_at=first - timedelta(hours=1))
    entry = ModelEntry(PeriodicTask.objects.get(id=schedule.periodic_task_id), app=celery_app)

    def due_at(moment) -> bool:
        entry.schedule.nowfun = lambda: moment
        return entry.is_due().is_due

    assert not due_at(first - timedelta(minutes=1))
    assert due_at(first + timedelta(seconds=1))

    firing = services.schedule_fire_due(schedule_id=schedule.id, now=first + timedelta(seconds=1))

    run = firing.run
    assert (firing.outcome, firing.attempt, firing.occurrence_at) == ("running", 1, first)
    assert (run.goal, run.context, run.created_by, run.agent_id) == (
        "Write the morning report.", {"team": "ops"}, owner, schedule.agent_id)
    schedule.refresh_from_db()
    assert schedule.next_fire_at == second


def test_a_repeated_or_early_wake_up_starts_nothing(make_schedule):
    schedule = make_schedule()
    first = schedule.next_fire_at

    assert services.schedule_fire_due(schedule_id=schedule.id, now=first - timedelta(hours=1)) is None
    assert services.schedule_fire_due(schedule_id=schedule.id, now=first + timedelta(seconds=1)) is not None
    assert services.schedule_fire_due(schedule_id=schedule.id, now=first + timedelta(seconds=2)) is None
    assert Run.objects.count() == 1


def test_the_tick_fires_a_schedule_that_beat_missed(make_schedule):
    schedule = make_schedule()
    first = schedule.next_fire_at

    assert services.automations_tick(now=first + timedelta(seconds=30))["caught_up"] == 0
    assert services.automations_tick(now=first + timedelta(seconds=90))["caught_up"] == 1
    assert schedule.firings.get().occurrence_at == first


def test_an_occurrence_missed_by_hours_is_recorded_as_skipped_not_run_late(make_schedule):
    schedule = make_schedule()
    first = schedule.next_fire_at

    firing = services.schedule_fire_due(schedule_id=schedule.id, now=first + timedelta(hours=3))

    assert firing.outcome == "skipped" and firing.run is None
    assert "Missed" in firing.error
    assert not Run.objects.exists()
    schedule.refresh_from_db()
    assert schedule.next_fire_at > first + timedelta(hours=3)


def test_a_disabled_schedule_does_not_fire_but_can_be_run_by_hand(make_schedule, owner):
    schedule = make_schedule()
    first = schedule.next_fire_at
    schedule = services.schedule_set_enabled(schedule=schedule, enabled=False, actor=owner)

    assert services.schedule_fire_due(schedule_id=schedule.id, now=first + timedelta(seconds=1)) is None
    firing = services.schedule_fire(schedule=schedule, actor=owner)
    assert firing.origin == "manual" and firing.run is not None


def test_a_schedule_whose_owner_left_the_organization_fails_without_starting_a_run(make_schedule, member, agent,
                                                                                    organization, owner):
    schedule = services.schedule_create(organization=organization, agent=agent, actor=owner, owner=member,
                                        name="Theirs", goal="Go.", cron="0 9 * * *")
    # (No service removes a membership yet; accounts has only membership_add.)
    member.memberships.all().delete()

    firing = services.schedule_fire(schedule=schedule, actor=owner)

    assert firing.outcome == "failed" and firing.run is None
    assert "no longer an active member" in firing.error


# ----------------------------------------------------------------------------- retries and emails


def test_a_failing_scheduled_run_is_retried_with_backoff_then_the_owner_is_emailed(make_schedule, settings,
                                                                                     smtp_sink):
    settings.AUTOMATIONS_RETRY_BACKOFF_SECONDS = 2  # 2 s, 8 s, 32 s
    schedule = make_schedule()
    t = schedule.next_fire_at + timedelta(seconds=1)
    services.schedule_fire_due(schedule_id=schedule.id, now=t)

    waits = []
    for attempt in (1, 2, 3):
        current = _attempts(schedule)[-1]
        finish(current.run, Run.Status.FAILED, error=f"Provider overloaded ({attempt})")
        services.automations_tick(now=t)
        retry = _attempts(schedule)[-1]
        assert (retry.attempt, retry.outcome) == (attempt + 1, "pending")
        waits.append((retry.due_at - t).total_seconds())
        services.automations_tick(now=retry.due_at - timedelta(seconds=1))
        assert ScheduleFiring.objects.get(id=retry.id).outcome == "pending"  # not before its time
        t = retry.due_at
        services.automations_tick(now=t)
        retry.refresh_from_db()
        assert retry.outcome == "running" and retry.run.goal == "Write the morning report."
    assert waits == [2, 8, 32]

    finish(_attempts(schedule)[-1].run, Run.Status.TIMED_OUT, error="Hard deadline passed.")
    services.automations_tick(now=t)

    attempts = _attempts(schedule)
    assert [a.outcome for a in attempts] == ["retrying", "retrying", "retrying", "failed"]
    assert len({a.run_id for a in attempts}) == 4
    assert len({a.occurrence_at for a in attempts}) == 1
    (mail,) = smtp_sink.wait_for(1)
    assert mail.recipients == ["olivia@example.com"]
    assert mail.message["Subject"] == "[Agentry] Scheduled run failed: Morning report"
    assert "failed after 4 attempts and will not be retried" in mail.body
    assert "Hard deadline passed." in mail.body
    assert f"/runs/{attempts[-1].run_id}/" in mail.body
    assert attempts[-1].notification == "sent"
    services.automations_tick(now=t + timedelta(minutes=5))
    assert len(smtp_sink.wait_for(2, timeout=0.5)) == 1  # sent once


def test_no_retries_means_the_first_failure_is_final(make_schedule, smtp_sink):
    schedule = make_schedule(max_retries=0)
    now = schedule.next_fire_at + timedelta(seconds=1)
    firing = services.schedule_fire_due(schedule_id=schedule.id, now=now)
    finish(firing.run, Run.Status.FAILED, error="Model error")

    services.automations_tick(now=now)

    assert [a.outcome for a in _attempts(schedule)] == ["failed"]
    assert "after 1 attempt " in smtp_sink.wait_for(1)[0].body


def test_success_is_emailed_only_when_the_schedule_asks(make_schedule, smtp_sink):
    quiet = make_schedule(name="Quiet")
    chatty = make_schedule(name="Chatty", notify_on_success=True)
    now = quiet.next_fire_at + timedelta(seconds=1)
    for schedule in (quiet, chatty):
        firing = services.schedule_fire_due(schedule_id=schedule.id, now=now)
        finish(firing.run, Run.Status.SUCCEEDED, answer="All systems nominal.")

    services.automations_tick(now=now)

    (mail,) = smtp_sink.wait_for(1)
    assert mail.message["Subject"] == "[Agentry] Scheduled run succeeded: Chatty"
    assert "All systems nominal." in mail.body
    assert [f.outcome for f in ScheduleFiring.objects.order_by("schedule__name")] == ["succeeded", "succeeded"]


def test_a_cancelled_run_is_not_retried(make_schedule, owner):
    schedule = make_schedule()
    now = schedule.next_fire_at + timedelta(seconds=1)
    firing = services.schedule_fire_due(schedule_id=schedule.id, now=now)
    agent_services.run_cancel(run=firing.run, actor=owner)

    services.automations_tick(now=now)

    assert [a.outcome for a in _attempts(schedule)] == ["cancelled"]


def test_an_email_that_cannot_be_sent_is_marked_and_the_tick_goes_on(make_schedule, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 2  # nothing listens
    schedule = make_schedule(max_retries=0)
    now = schedule.next_fire_at + timedelta(seconds=1)
    firing = services.schedule_fire_due(schedule_id=schedule.id, now=now)
    finish(firing.run, Run.Status.FAILED)

    counts = services.automations_tick(now=now)

    firing.refresh_from_db()
    assert (firing.outcome, firing.notification, counts["emails"]) == ("failed", "failed", 0)


def test_disabling_a_schedule_stops_its_pending_retries(make_schedule, owner):
    schedule = make_schedule()
    now = schedule.next_fire_at + timedelta(seconds=1)
    firing = services.schedule_fire_due(schedule_id=schedule.id, now=now)
    finish(firing.run, Run.Status.FAILED)
    services.automations_tick(now=now)
    services.schedule_set_enabled(schedule=schedule, enabled=False, actor=owner)

    services.automations_tick(now=now + timedelta(hours=1))

    assert [a.outcome for a in _attempts(schedule)] == ["retrying", "skipped"]


# ----------------------------------------------------------------------------- DST and beat


@pytest.mark.parametrize("saturday, sunday", [
    (datetime(2026, 3, 28, 8, 0, tzinfo=UTC), datetime(2026, 3, 29, 7, 0, tzinfo=UTC)),  # spring forward
    (datetime(2026, 10, 24, 7, 0, tzinfo=UTC), datetime(2026, 10, 25, 8, 0, tzinfo=UTC)),  # fall back
])
def test_a_daily_schedule_fires_once_at_its_local_time_on_dst_change_days(organization, owner, agent, saturday,
                                                                          sunday):
    """Beat's own due-check (django-celery-beat's ModelEntry, on a frozen clock), our guard and the
    tick's catch-up together start the 09:00 Berlin run once, at 09:00 local, within two minutes."""
    schedule = services.schedule_create(organization=organization, agent=agent, actor=owner, name="Daily",
                                        goal="Go.", cron="0 9 * * *", timezone="Europe/Berlin",
                                        now=saturday - timedelta(hours=12))
    fired_at = saturday + timedelta(seconds=1)
    assert services.schedule_fire_due(schedule_id=schedule.id, now=fired_at).occurrence_at == saturday
    PeriodicTask.objects.filter(id=schedule.periodic_task_id).update(last_run_at=fired_at)
    entry = ModelEntry(PeriodicTask.objects.get(id=schedule.periodic_task_id), app=celery_app)

    def beat_wakes_at(moment) -> bool:
        entry.schedule.nowfun = lambda: moment
        return entry.is_due().is_due

    minute = fired_at + timedelta(minutes=1)
    while minute <= sunday + timedelta(minutes=1) and not beat_wakes_at(minute):
        minute += timedelta(minutes=1)
    services.schedule_fire_due(schedule_id=schedule.id, now=minute)  # beat's wake-up
    for second in range(0, 121, 5):  # the tick, every 5 s
        services.automations_tick(now=sunday + timedelta(seconds=second))

    on_sunday = list(schedule.firings.filter(occurrence_at__gt=saturday))
    assert [f.occurrence_at for f in on_sunday] == [sunday]
    assert on_sunday[0].fired_at <= sunday + timedelta(minutes=2)
    assert Run.objects.count() == 2


def test_a_schedule_over_its_owners_quota_records_why_it_did_not_run(make_schedule):
    from accounts.models import Quota

    schedule = make_schedule()
    Quota.objects.create(organization=schedule.organization, runs_per_month=0)

    firing = services.schedule_fire_due(schedule_id=schedule.id, now=schedule.next_fire_at + timedelta(seconds=1))

    assert firing.outcome == "failed" and firing.run is None
    assert "Monthly quota reached" in firing.error
    assert not Run.objects.exists()
