from __future__ import annotations

from django.urls import path

from agents import views

app_name = "agents"

urlpatterns = [
    path("", views.home, name="home"),
    path("agents/", views.agent_list, name="agent-list"),
    path("agents/new", views.agent_create, name="agent-create"),
    path("agents/<uuid:agent_id>/", views.agent_detail, name="agent-detail"),
    path("agents/<uuid:agent_id>/edit", views.agent_edit, name="agent-edit"),
    path("agents/<uuid:agent_id>/delete", views.agent_delete, name="agent-delete"),
    path("agents/<uuid:agent_id>/run", views.agent_run, name="agent-run"),
    path("agents/<uuid:agent_id>/share", views.agent_share, name="agent-share"),
    path("runs/", views.run_list, name="run-list"),
    path("runs/<uuid:run_id>/", views.run_detail, name="run-detail"),
    path("runs/<uuid:run_id>/summary", views.run_summary, name="run-summary"),
    path("runs/<uuid:run_id>/controls", views.run_controls, name="run-controls"),
    path("runs/<uuid:run_id>/cancel", views.run_cancel, name="run-cancel"),
    path("runs/<uuid:run_id>/pause", views.run_pause, name="run-pause"),
    path("runs/<uuid:run_id>/resume", views.run_resume, name="run-resume"),
    path("runs/<uuid:run_id>/retry", views.run_retry, name="run-retry"),
    path("runs/<uuid:run_id>/rerun", views.run_rerun, name="run-rerun"),
    path("runs/<uuid:run_id>/uncertain-write", views.run_uncertain_write, name="run-uncertain-write"),
    path("approvals/", views.approval_list, name="approval-list"),
    path("approvals/badge", views.approval_badge, name="approval-badge"),
    path("approvals/<uuid:approval_id>/", views.approval_detail, name="approval-detail"),
    path("approvals/<uuid:approval_id>/decide", views.approval_decide, name="approval-decide"),
]
