"""The WSGI entry point for gunicorn (Procfile `web`): `gunicorn app.wsgi:application`."""

from __future__ import annotations

import gc

from app import create_app

application = create_app()

# Modules, models and the app live as long as the process. Moving them out of the cyclic garbage
# collector's reach turns its occasional full pass from ~60 ms into well under a millisecond, a
# pause every request in flight would otherwise wait out (bench/RESULTS.md: p99 at half load).
gc.freeze()
