"""Messages to customers: reminders, consent, signed links, rendering and sending e-mail.

No Flask here.
"""
