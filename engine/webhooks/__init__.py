"""What arrives from outside after a message has left: provider webhooks and unsubscribe pages.

``app.py`` is the ASGI application behind ``campaign serve``; each other module handles one
kind of request (signature checks, SendGrid events, Twilio status callbacks, inbound SMS,
unsubscribe pages) and knows nothing about HTTP beyond what it is given.
"""
