"""Call lists and the agent's workflow: agents, claim-next with a lease, call scripts with the
account review, dispositions on standard documentation templates, callbacks, recycling, the
hash-chained caller log, dialer export/import, and the queries the agent reports read."""

# message_events.provider of the calls a dialer's results file imported (engine/calls/dialer.py);
# here so that the agent's script (engine/calls/scripts.py) names it without loading the importer.
DIALER_PROVIDER = "dialer"
