"""gunicorn settings for the web service; `PORT` comes from the settings."""

from __future__ import annotations

import os

from shared import settings

_s = settings.load()
bind = f"{os.environ.get('BENCH_WEB_HOST', '0.0.0.0')}:{_s.port}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = "gthread"
timeout = 60
graceful_timeout = 20
accesslog = "-" if os.environ.get("BENCH_ACCESS_LOG") else None
errorlog = "-"
proc_name = "bench-web"
