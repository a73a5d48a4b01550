"""Settings for the `rq` command line (`rq worker -c app.rq_settings`, `rq cron -c app.rq_settings`).

The Redis URL comes from app.config (REDIS_URL), so a password in it never sits on a command line,
where every local user could read it (`ps`).
"""

from app import config

REDIS_URL = config.load()["REDIS_URL"]
