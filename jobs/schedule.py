"""What the `clock` process (`rq cron jobs/schedule.py`) triggers. Only sweeps, all idempotent.

Each entry enqueues a sweep job; the worker runs it. A sweep that runs twice does no harm.
"""

from rq import cron

from jobs.backfill import finish_backfills
from jobs.codes import requeue_pending
from jobs.deliveries import purge_delivery_bodies, requeue_stuck_deliveries
from jobs.members import review_tiers, settle_referrals
from jobs.metafields import sweep_metafields
from jobs.points import award_birthday_bonuses, expire_points, mature_points
from jobs.reconcile import reconcile_all
from jobs.shops import check_woocommerce_webhooks, purge_plugin_nonces
from jobs.tier_tags import requeue_tier_tags

cron.register(requeue_stuck_deliveries, queue_name="webhooks", interval=30)
cron.register(purge_delivery_bodies, queue_name="webhooks", cron="50 3 * * *")
cron.register(requeue_pending, queue_name="codes", interval=60)
cron.register(mature_points, queue_name="points", interval=300)
cron.register(expire_points, queue_name="points", cron="15 * * * *")
cron.register(review_tiers, queue_name="points", cron="30 * * * *")
cron.register(settle_referrals, queue_name="points", cron="45 * * * *")
cron.register(award_birthday_bonuses, queue_name="points", cron="5 * * * *")
cron.register(check_woocommerce_webhooks, queue_name="codes", interval=600)
cron.register(reconcile_all, queue_name="codes", interval=300)
cron.register(purge_plugin_nonces, queue_name="webhooks", cron="20 * * * *")
cron.register(finish_backfills, queue_name="points", interval=60)
cron.register(sweep_metafields, queue_name="codes", interval=60)
cron.register(requeue_tier_tags, queue_name="codes", interval=60)
from jobs.reminders import sweep_reminders  # noqa: E402 - grouped with its registration

cron.register(sweep_reminders, queue_name="reminders", interval=300)
