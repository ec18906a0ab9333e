"""Sending: from a queued outbox row to a message the provider accepted, paced and recorded.

The stages of one message, and the module each lives in (the worker that runs them, the
claim/gate/send/record loop, is still ``engine/dispatch.py``; it moves here next)::

    sequencing queues a row ---------- content_checks.py  content a provider would refuse is
      (engine/sequencing/)                                   skipped before it is queued
            |                          deadlines.py       its expires_at (nothing sent late)
            v
    outbox_messages: queued            outbox_status.py   which status may follow which
            |
            | claim (lease, dispatch_claims groups)          engine/dispatch.py
            v
    gate again, at send time           deadlines.py, contact_ledger.py (the frequency caps'
            |                          ledger), engine/policy, engine/consent (suppressions)
            | wait for the provider    circuits.py        a provider that is down makes its
            |                                             channel wait, not messages fail
            | wait for a slot          sender_limits.py   the limit of this channel and sender:
            |                          ratelimit.py         a token bucket (SQLite, one process)
            |                          shared_ratelimit.py  slots in PostgreSQL (every worker)
            v
    send (engine/channels)             in_flight.py       several requests in flight, so a
            |                                             slow provider does not set the rate
            v
    record: sent + contacts row,       engine/dispatch_record.py (in small handed-off groups)
      queued again, failed, unknown    contact_ledger.py  what a cap counts afterwards

    by hand: outbox.py (list, settle unknown, requeue; a stored row -> the Outbound a channel
    sends) and send_test.py (one real message of a step, taking its slot of the same limit)
"""
