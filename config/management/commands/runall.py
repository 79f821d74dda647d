"""`make run`: migrate, bootstrap, then web + worker + beat in the foreground with prefixed logs.

Ctrl-C stops every child (SIGTERM, then SIGKILL after a few seconds) and, if this command started
the embedded Postgres and Redis, stops them too. Data stays under var/ for the next start.
"""

from __future__ import annotations

import os
import shlex
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from honcho.manager import Manager
from honcho.printer import Printer

from config import embedded
from config.env import env_int, env_str


class Command(BaseCommand):
    help = "Run the whole app (web, worker, beat) in the foreground."

    def handle(self, *args, **options):
        port = env_int("PORT", 8000, minimum=1, maximum=65535)
        host = env_str("HOST", "127.0.0.1")
        concurrency = env_int("AGENTRY_WORKER_CONCURRENCY", 64, minimum=1, maximum=2000)

        call_command("migrate", interactive=False, verbosity=0)
        call_command("bootstrap")

        env = dict(os.environ)
        # Children use the servers resolved here instead of each looking for the embedded ones.
        env["DATABASE_URL"] = settings.DATABASE_URL
        env["REDIS_URL"] = settings.REDIS_URL
        env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        env["PYTHONUNBUFFERED"] = "1"
        python = shlex.quote(sys.executable)
        queue = settings.CELERY_TASK_DEFAULT_QUEUE
        processes = {
            "web": f"{python} -m uvicorn config.asgi:application --host {shlex.quote(host)} --port {port} "
            "--no-access-log",
            # Threads: a run spends its life waiting on the model, so one process holds many.
            "worker": f"{python} -m celery -A config worker --pool threads --concurrency {concurrency} "
            f"--queues {queue} --loglevel INFO --without-gossip --without-mingle",
            "beat": f"{python} -m celery -A config beat --loglevel INFO "
            "--scheduler django_celery_beat.schedulers:DatabaseScheduler",
        }
        model = "Claude" if settings.ANTHROPIC_API_KEY else "the offline demo model (set ANTHROPIC_API_KEY for Claude)"
        self.stdout.write(
            self.style.SUCCESS(f"Agentry on http://{host}:{port}/ (admin: /admin/, API docs: /api/docs/) using {model}")
        )
        manager = Manager(Printer(sys.stdout, colour=sys.stdout.isatty()))
        for name, command in processes.items():
            manager.add_process(name, command, env=env, cwd=str(settings.BASE_DIR))
        try:
            manager.loop()
        finally:
            if embedded.started_here:
                self.stdout.write(f"stopping embedded {', '.join(sorted(embedded.started_here))}")
                embedded.stop(set(embedded.started_here))
        sys.exit(manager.returncode or 0)
