from __future__ import annotations

from celery import shared_task

from accounts import audit


@shared_task(name="accounts.audit_purge", ignore_result=True)
def audit_purge() -> int:
    return audit.audit_purge()
