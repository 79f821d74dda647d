"""Run ownership: a worker claims a run with a lease in Postgres and keeps it alive by heartbeat.

The lease carries a fencing token that goes up with every claim. Every write the loop makes
names its token, so once another worker has taken a run over (the first one died, stalled or lost
the network), the old owner's writes match nothing and it stops.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)

HOLDER = f"{socket.gethostname()}:{os.getpid()}"

_CLAIM = """
WITH before AS (SELECT id, status FROM agents_run WHERE id = %s FOR UPDATE)
UPDATE agents_run
   SET status = 'running',
       lease_holder = %s,
       lease_token = lease_token + 1,
       lease_expires_at = now() + make_interval(secs => %s),
       attempts = attempts + 1,
       pause_requested_at = NULL,
       started_at = COALESCE(started_at, now()),
       deadline_at = COALESCE(deadline_at, now() + make_interval(secs => (config->>'timeout_seconds')::int))
  FROM before
 WHERE agents_run.id = before.id
   AND (agents_run.status = 'queued' OR (agents_run.status = 'running' AND agents_run.lease_expires_at < now()))
RETURNING agents_run.lease_token, agents_run.attempts, before.status = 'running' AS takeover
"""

_RENEW = """
UPDATE agents_run
   SET lease_expires_at = now() + make_interval(secs => %s)
 WHERE status = 'running' AND lease_holder = %s
   AND (id, lease_token) IN (SELECT * FROM unnest(%s::uuid[], %s::bigint[]))
RETURNING id
"""


class LeaseLost(Exception):
    """Another worker owns this run now; stop without writing."""


@dataclass(frozen=True)
class Lease:
    token: int
    attempt: int
    takeover: bool = False  # taken from a worker whose lease expired, not picked up from the queue


def claim(run_id) -> Lease | None:
    """Take a queued run, or a running one whose owner stopped renewing. None if not ours to take."""
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM, [run_id, HOLDER, settings.RUN_LEASE_SECONDS])
        row = cursor.fetchone()
    return Lease(token=row[0], attempt=row[1], takeover=row[2]) if row else None


class Keeper:
    """Renews the leases of every run this process is executing, from one background thread."""

    def __init__(self) -> None:
        self._held: dict[str, int] = {}
        self._lost: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    def hold(self, run_id, token: int) -> None:
        with self._lock:
            self._held[str(run_id)] = token
            self._lost.discard(str(run_id))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
                self._thread.start()

    def release(self, run_id) -> None:
        with self._lock:
            self._held.pop(str(run_id), None)
            self._lost.discard(str(run_id))

    def lost(self, run_id) -> bool:
        with self._lock:
            return str(run_id) in self._lost

    def renew_now(self) -> None:
        with self._lock:
            held = dict(self._held)
        if not held:
            return
        try:
            with connection.cursor() as cursor:
                cursor.execute(_RENEW, [settings.RUN_LEASE_SECONDS, HOLDER, list(held), list(held.values())])
                renewed = {str(row[0]) for row in cursor.fetchall()}
                missing = [run_id for run_id in held if run_id not in renewed]
                if missing:
                    # Lost means another holder or status now; a row this connection can't see (deleted,
                    # or not yet committed by the caller) is left to the loop, whose next fenced write
                    # finds out for itself.
                    cursor.execute("SELECT id FROM agents_run WHERE id = ANY(%s::uuid[])", [missing])
                    visible = {str(row[0]) for row in cursor.fetchall()}
                    renewed |= set(missing) - visible
        finally:
            if not connection.in_atomic_block:  # the heartbeat thread's own connection goes back to the pool
                connection.close()
        with self._lock:
            for run_id, token in held.items():
                if run_id not in renewed and self._held.get(run_id) == token:
                    logger.warning("lease on run %s was lost; stopping it here", run_id)
                    self._lost.add(run_id)

    def _run(self) -> None:
        while True:
            self._wake.wait(max(0.2, settings.RUN_LEASE_SECONDS / 3))
            try:
                self.renew_now()
            except Exception:  # noqa: BLE001 - a failed heartbeat is retried; expiry is the backstop
                logger.warning("lease heartbeat failed", exc_info=True)


keeper = Keeper()
