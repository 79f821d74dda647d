"""Mounted at the site root by one line in config/urls.py, so this app owns its three prefixes:
/api/… (REST), /hooks/… (public webhook endpoint) and /automations/… (pages)."""

from __future__ import annotations

from django.urls import include, path, re_path
from rest_framework.routers import SimpleRouter

from automations import api, views

app_name = "automations"

router = SimpleRouter()
router.trailing_slash = "/?"  # as in config/urls.py: documented without the slash, both accepted
router.register("schedules", api.ScheduleViewSet, basename="api-schedule")
router.register("triggers", api.TriggerViewSet, basename="api-trigger")
router.register("trigger-events", api.TriggerEventViewSet, basename="api-trigger-event")

urlpatterns = [
    path("api/", include(router.urls)),
    re_path(r"^hooks/(?P<public_id>[A-Za-z0-9_-]{1,64})/?$", api.WebhookView.as_view(), name="webhook"),
    path("automations/schedules/", views.schedule_list, name="schedule-list"),
    path("automations/schedules/new", views.schedule_create, name="schedule-create"),
    path("automations/schedules/preview", views.schedule_preview, name="schedule-preview"),
    path("automations/schedules/<uuid:schedule_id>/", views.schedule_detail, name="schedule-detail"),
    path("automations/schedules/<uuid:schedule_id>/edit", views.schedule_edit, name="schedule-edit"),
    path("automations/schedules/<uuid:schedule_id>/delete", views.schedule_delete, name="schedule-delete"),
    path("automations/schedules/<uuid:schedule_id>/toggle", views.schedule_toggle, name="schedule-toggle"),
    path("automations/schedules/<uuid:schedule_id>/fire", views.schedule_fire, name="schedule-fire"),
    path("automations/triggers/", views.trigger_list, name="trigger-list"),
    path("automations/triggers/new", views.trigger_create, name="trigger-create"),
    path("automations/triggers/<uuid:trigger_id>/", views.trigger_detail, name="trigger-detail"),
    path("automations/triggers/<uuid:trigger_id>/edit", views.trigger_edit, name="trigger-edit"),
    path("automations/triggers/<uuid:trigger_id>/delete", views.trigger_delete, name="trigger-delete"),
    path("automations/triggers/<uuid:trigger_id>/toggle", views.trigger_toggle, name="trigger-toggle"),
    path("automations/triggers/<uuid:trigger_id>/rotate", views.trigger_rotate, name="trigger-rotate"),
    path("automations/events/", views.event_list, name="event-list"),
]
