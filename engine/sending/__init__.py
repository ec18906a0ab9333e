"""Sending: from a queued outbox row to a message the provider accepted, paced and recorded.

The stages of one message, and the module each lives in. ``dispatch.py`` runs them: each
worker is three threads (claim the next batch / send this one / write outcomes), so the
database's time overlaps the requests; ``shared.py`` is what its threads share::

    sequencing queues a row ---------- content_checks.py  content a provider would refuse is
      (engine/sequencing/)                                   skipped before it is queued
            |                          deadlines.py       its expires_at (nothing sent late)
            v
    outbox_messages: queued            outbox_status.py   which status may follow which
            |
            | CLAIM                    claim.py           a lease, cut in hand-off groups
            |   (claiming thread)      leases.py          a dead dispatcher's lease: queued
            |                                             again, or unknown if handed off
            |   read the gate's facts  gate.py load_facts consents, suppressions, the
            v                          contact_ledger.py  frequency caps' ledger, deadlines
    GATE, at send time                 gate.py            engine/policy under both caps;
            |   (sending thread)                          wait (queued again) or skip
            |
            | hand off the group       record.py          claimed -> handed, a span ahead
            | wait for the provider    circuits.py        a provider that is down makes its
            |                                             channel wait, not messages fail
            | suppressed since?        gate.py            read again every 250 ms
            | wait for a slot          sender_limits.py   the limit of this channel and sender:
            |                          ratelimit.py         a token bucket (SQLite, one process)
            |                          shared_ratelimit.py  slots in PostgreSQL (every worker)
            v
    SEND (engine/channels)             batch.py           one claimed batch, each answer
            |                          in_flight.py       settled as it comes; several in
            |                                             flight, so latency does not set rate
            v
    RECORD: sent + contacts row,       record.py          outcomes written as they come, by
      queued again, failed, unknown      (writing thread)   the worker's writing thread
            |                          failures.py        what an answer sets off: the
            |                                             circuit, an auto-pause, suppression
            v
    unknown -> settled                 reconcile.py       the providers' logs say what went

    by hand: outbox.py (list, settle unknown, requeue; a stored row -> the Outbound a channel
    sends) and send_test.py (one real message of a step, taking its slot of the same limit)
"""
