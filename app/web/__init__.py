"""The web layer: the webhook receiver, the admin, the customer and public pages, and the CLI."""
