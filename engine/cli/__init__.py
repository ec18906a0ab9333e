"""The `campaign` commands, one module per command group; the entry point is cli.py.

    cli.py (root group: options, CliState, error handling) registers
      getting_started  db, init, demo
      programs         programs
      participants     participants, events, suppress
      suppressions     suppressions sync
      campaigns        validate, plan, explain, launch, preview
      runs             runs, pause, resume, cancel
      outbox           dispatch, outbox, send-test
      agents           agents
      calls            calls
      cases            cases
      scheduling       advance, tick, scheduler, serve
      report           report (every report declared once through report_command)
      subscriptions    reports (subscriptions)
    common             what they share: CliState, writing and reading transactions, --json, tables

Each command parses, calls one engine function and renders; it imports what it uses inside
its function, so registering a group loads nothing heavy. Nothing is imported here.
"""
