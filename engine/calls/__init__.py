"""Call lists and the agent's workflow: agents, claim-next with a lease, call scripts with the
account review, dispositions on standard documentation templates, callbacks, recycling, the
hash-chained caller log, dialer export/import, and the queries the agent reports read."""
