"""Consent, opt-outs and suppression: who may be contacted, on which channel, and why not.

Where an opt-out enters, where it is kept, and where every sender checks it::

    ENTERS                                   KEPT                        CHECKED
    ------                                   ----                        -------
    unsubscribe link  /u/<token>  ---.
      (unsubscribe.py signs it,      |
       webhooks/unsubscribe_pages)   |
    SMS STOP / START                 |
      (webhooks/inbound_sms)         |
    SendGrid bounce/spam/unsub   ----+--> opt_outs.suppress() --> suppressions table
      (webhooks/sendgrid_events,     |    (settles what waits:     (suppressions.py:
       webhooks/sendgrid_groups)     |     queued messages ->       keyed by address
    Twilio failed-number status  ----|     skipped, open call       hash, per channel
      (webhooks/twilio_events)       |     tasks closed)            or "all")
    suppression_sync.py (SendGrid ---'                                   |
      lists, when no webhook)                                            |
    `campaign suppress add`, call dispositions (calls/log),              |
      erasure (participants/erasure) --> suppressions.add_suppression ---+
                                                                         |
    participant import: consent columns --> participants.*_consent ---.  |
    `programs set KEY --consent-default sms=yes`                      |  |
      --> programs.consent_default_*_at (defaults.py:                 |  |
      fills only a consent not stated)                             ---+  |
                                                                      v  v
                          policy/gate.py decides (suppressed, opted_out, no_consent) in:
                          - sequencing: before a message is queued or a call task opened
                          - dispatch: again when a message is claimed, and right before
                            its request when the facts read are old
                          - calls/tasks: when an agent claims a call
                          - send_test (suppressions.is_suppressed): the one message sent by hand

Every provider event (webhooks, the sync) is written once through provider_events.py, which
also moves outbox rows forward only. wording.py says a closed channel to people ("consent not
stated" is not an opt-out).
"""
