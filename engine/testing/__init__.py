"""Test fakes shipped with the engine, for its own tests, its benchmarks and integrators.

Nothing in ``engine/`` outside this package imports it; it imports the engine like a user::

    test / benchmark
      |-- fakes.py      builders (make_program, make_participant, make_run, ...) that insert
      |                 through the ORM and flush (the caller owns the transaction), and
      |                 RecordingChannel: a Channel that keeps what it was asked to send
      |                 (with scripted failures) instead of calling a provider
      |-- fake_sendgrid.py  FakeSendGrid / FakeTwilio: real HTTP servers on 127.0.0.1 that
      |-- fake_twilio.py    check credentials and validate every request body against the
      |                     providers' OpenAPI documents, so the real adapters (engine/channels)
      |                     run against them unchanged
      |-- fake_server.py    what both share: the threaded keep-alive server, the recording of
      |                     requests, scripted failures (Canned)
      |-- contracts.py      the OpenAPI documents and the body validators
      `-- providers.py      every name above in one import, for integrators

The clock seam itself is ``engine.clock`` (FrozenClock), used by product code too. Nothing is
imported here, so reaching for one fake does not load the other's dependencies.
"""
