"""The caller log's MAC key: from the settings or a key file, never from the database.

Whoever can write the database must not be able to rewrite the caller log and recompute its
chain, so the key lives outside it: ``CAMPAIGN_CALLER_LOG_KEY`` (the key itself), or
``CAMPAIGN_CALLER_LOG_KEY_FILE``, or by default a key file made on first use with mode 0600:

- SQLite: beside the database file (``campaign.db.caller-log.key``), so the database and its
  key travel together on one machine (back the key file up with the database's backups, and
  keep it elsewhere than the copies you hand out);
- PostgreSQL: ``~/.config/campaign-engine/caller-log-<database>.key`` of the user running the
  engine. With several machines, set CAMPAIGN_CALLER_LOG_KEY_FILE to the same key on each.

A key that changes, or a key file that disappears after entries were written, makes
``calls verify-log`` report the entries as not matching: a lost key cannot be told apart from
tampering, which is the point.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from sqlalchemy.engine import make_url

from engine.errors import ConfigError
from engine.settings import Settings

# Every session the App makes carries the key provider in Session.info under this name.
SESSION_INFO_KEY = "caller_log_key"


def default_key_file(database_url: str) -> Path | None:
    """Where the key lives when the settings name none; None for an in-memory database."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            return None
        return Path(f"{url.database}.caller-log.key").resolve()
    where = url.set(password=None).render_as_string(hide_password=True)
    tag = hashlib.sha256(where.encode()).hexdigest()[:12]
    name = f"caller-log-{url.database or 'default'}-{tag}.key"
    return Path.home() / ".config" / "campaign-engine" / name


def _read(path: Path) -> bytes:
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the caller log key file {path} ({exc.strerror}); "
            "set CAMPAIGN_CALLER_LOG_KEY_FILE to the file holding the key"
        ) from exc
    if len(key) < 32:
        raise ConfigError(f"the caller log key in {path} is shorter than 32 characters")
    return key.encode("utf-8")


def _new_key() -> str:
    # secrets (hmac, random...) only for the one command that makes a key: every App has a
    # CallerLogKey, few commands ever resolve it (#18).
    import secrets

    return secrets.token_hex(32)


def _create(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    key = _new_key()
    try:
        # O_EXCL: two processes making the key at once keep one; the loser reads the winner's.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    return key.encode("utf-8")


class CallerLogKey:
    """Resolved on first use only, so commands that never touch the caller log make no file."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._key: bytes | None = None
        self._lock = threading.Lock()

    def get(self, *, create: bool = True) -> bytes:
        with self._lock:
            if self._key is None:
                self._key = self._resolve(create)
            return self._key

    def _resolve(self, create: bool) -> bytes:
        settings = self._settings
        if settings.caller_log_key:
            return settings.caller_log_key.encode("utf-8")
        if settings.caller_log_key_file is not None:
            return _read(settings.caller_log_key_file)
        path = default_key_file(settings.database_url)
        if path is None:  # an in-memory database lives as long as this process: so does its key
            return _new_key().encode()
        if path.exists():
            return _read(path)
        if not create:
            raise ConfigError(
                f"no caller log key: {path} does not exist. Set CAMPAIGN_CALLER_LOG_KEY_FILE to "
                "the key the log was written with"
            )
        return _create(path)
