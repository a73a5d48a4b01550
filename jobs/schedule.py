"""What the `clock` process (`rq cron jobs/schedule.py`) triggers. Only sweeps, all idempotent.

Each entry enqueues a sweep job; the worker runs it. A sweep that runs twice does no harm.
"""

from rq import cron

from jobs.deliveries import requeue_stuck_deliveries
from jobs.points import mature_points

cron.register(requeue_stuck_deliveries, queue_name="webhooks", interval=30)
cron.register(mature_points, queue_name="points", interval=300)
