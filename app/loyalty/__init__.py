"""The loyalty domain: orders, customers, points, the ledger, tiers, referrals, rewards and codes.

No Flask here: jobs, the CLI and the web layer call these modules.
"""
