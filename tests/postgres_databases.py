"""Fresh PostgreSQL databases for the tests, copied from a migrated template off the tests'
critical path (tests/conftest.py's ``postgres_databases``)."""

from __future__ import annotations

import uuid
from concurrent.futures import Future, ThreadPoolExecutor

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


class FreshPostgresDatabases:
    """Copies of the template made and dropped by one background thread, so that a test waits
    for neither: the next copy is made while the current test runs, and a used one is dropped
    after its test (a DROP DATABASE forces a checkpoint: 0.2-1 s on a busy server). One thread,
    first come first served: the copy for the next test is asked for before this test's drop.
    """

    def __init__(self, admin_url: str, template: str) -> None:
        self.admin_url = admin_url
        self.template = template
        self._admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="postgres-databases")
        self._next: Future[str] | None = None
        self._drops: list[Future[None]] = []

    def take(self) -> str:
        """The URL of a fresh migrated database, the caller's alone until it is dropped."""
        if self._next is None:
            self._next = self._worker.submit(self._create)
        name = self._next.result()
        self._next = self._worker.submit(self._create)
        return make_url(self.admin_url).set(database=name).render_as_string(False)

    def drop_later(self, url: str) -> None:
        name = make_url(url).database
        self._drops.append(self._worker.submit(self._drop, name))

    def close(self) -> None:
        spare = self._next
        self._worker.shutdown(wait=True)
        if spare is not None and spare.exception() is None:
            self._drop(spare.result())
        self._admin.dispose()
        for drop in self._drops:
            drop.result()  # a drop that failed says so here, at the end of the session

    def _create(self) -> str:
        name = f"campaign_t_{uuid.uuid4().hex[:12]}"
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return name

    def _drop(self, name: str | None) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _execute(self, statement: str) -> None:
        with self._admin.connect() as connection:
            connection.execute(text(statement))
