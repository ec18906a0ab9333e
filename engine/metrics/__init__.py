"""What operators watch: the engine's figures on ``/metrics`` of ``campaign serve``.

    dispatcher, tick, webhooks           campaign serve
    (any process, any machine)           GET /metrics (Prometheus text format)
      Counters.add / beat  --flush-->  metric_counters,   --read by-->  EngineCollector
      (in memory, summed)              process_heartbeats               + the live state:
                                                                        outbox tallies, due
                                                                        queue, runs, call
                                                                        tasks, circuits

Counters of events in other processes are persisted, not served by each process on a port of
its own: the tick and ``dispatch --drain`` are often short cron jobs whose in-memory counters
would die before any scrape, and many dispatchers on many machines would each need a scrape
target. Each process adds what it counted since its last flush (one small upsert every few
seconds: the dispatcher's heartbeat, the end of a tick, a scrape, the app's close), so one
scrape of ``serve`` sees the sums over every process. Gauges (queue depth, oldest due message,
runs, open call tasks, circuits) are read at scrape time with index-backed queries.

``names`` holds the metric names (the alert rules in docs/operations.md use them),
``counters`` the in-memory sums and their flush, ``recording`` what the working code calls,
``collector`` the scrape; engine/webhooks/observed.py serves it. JSON logs: engine/logs.py.
"""
