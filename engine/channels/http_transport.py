"""HTTP POSTs to one provider over urllib3, with errors sorted by whether the request could
have reached the server.

urllib3 does the HTTP (framing, keep-alive, TLS with certificate verification, proxies); this
module adds what the dispatcher needs from a transport:

- **a pool per thread**: each dispatcher worker or in-flight thread keeps its own keep-alive
  connection (a one-connection urllib3 pool), so threads never wait on each other's sockets;
- **proxies from the environment**, as curl and requests read them: ``HTTPS_PROXY`` /
  ``HTTP_PROXY`` (lower case too) for the provider's scheme, unless ``NO_PROXY`` names its host;
- **the outcome of a failure**: a connection that could not be made, or a request that was
  not written in full, cannot have been acted on: :class:`RetryableError`. Once the whole
  request was written, a timeout or a hang-up while waiting for the answer may hide an
  accepted message: :class:`UnknownOutcomeError` (never resent blindly).

urllib3 swallows a broken pipe while writing and goes on to read (a server may answer and
close before reading everything), so whether the request was written in full cannot be told
from the exception it raises; the connection classes below note it as they write.
"""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)

from engine.channels.base import RetryableError, UnknownOutcomeError
from engine.errors import ConfigError


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: Mapping[str, str]  # case-insensitive names
    body: bytes


# Whether the request now being made on this thread was written to the socket in full.
_progress = threading.local()
# No retries and no redirects: every failure comes back to be sorted (a built Retry is used as
# is; ``retries=False`` would build one per request).
_NO_RETRIES = urllib3.Retry(total=False, redirect=False)


class _NotesWrites:
    """Mixin for urllib3's connection classes: records in :data:`_progress` whether
    ``request()`` wrote head and body in full; and writes them in one ``send`` (http.client
    writes the head, then the body: two system calls, and two wake-ups of the server)."""

    _held: bytes | None = None
    _holding = False

    def request(self, *args: Any, **kwargs: Any) -> None:
        _progress.written = False
        self._held, self._holding = None, True
        try:
            super().request(*args, **kwargs)  # type: ignore[misc]
            if self._held is not None:  # a request without a body: the head alone
                self._flush(b"")
        finally:
            self._held, self._holding = None, False
        _progress.written = True

    def send(self, data: Any) -> None:
        if not self._holding:
            super().send(data)  # type: ignore[misc]
        elif self._held is None and isinstance(data, bytes):
            self._held = data  # the head: goes out with the first piece of the body
        else:
            self._flush(data)

    def _flush(self, data: Any) -> None:
        head, self._held, self._holding = self._held or b"", None, False
        super().send(head + data if isinstance(data, bytes) else head)  # type: ignore[misc]
        if not isinstance(data, bytes):
            super().send(data)  # type: ignore[misc]


class _HTTPConnection(_NotesWrites, HTTPConnection):
    pass


class _HTTPSConnection(_NotesWrites, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY`` for https, ``HTTP_PROXY``
    for http, lower-case spellings too), or None when there is none or ``NO_PROXY`` exempts
    the host (the standard library's rules, which curl and requests follow too)."""
    parts = urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if not proxy or urllib.request.proxy_bypass(parts.netloc):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _redact(url: str) -> str:
    """``url`` without the user and password a proxy URL may carry (for messages)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    return parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host).geturl()


class PooledHttpClient:
    """POSTs to one base URL over urllib3: a keep-alive connection per thread, certificates
    verified, the environment's proxy, errors sorted by whether the request went (module
    docstring). Thread-safe; :meth:`close` closes every thread's connection."""

    def __init__(
        self, base_url: str, *, connect_timeout: float = 5.0, read_timeout: float = 30.0
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"not an http(s) URL: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._prefix = parts.path.rstrip("/")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.proxy = proxy_for(self.base_url)
        if self.proxy is not None and urlsplit(self.proxy).scheme not in ("http", "https"):
            raise ConfigError(
                f"proxy {_redact(self.proxy)!r} for {self.base_url}: only http:// and https:// "
                "proxies are supported"
            )
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._managers: list[urllib3.PoolManager] = []

    def _sender(self) -> Callable[..., Any]:
        """This thread's ``urlopen`` and the request target it takes."""
        sender: Callable[..., Any] | None = getattr(self._local, "sender", None)
        if sender is not None:
            return sender
        # One host, one connection: the thread's own keep-alive connection.
        options: dict[str, Any] = {"num_pools": 1, "maxsize": 1, "cert_reqs": "CERT_REQUIRED"}
        manager: urllib3.PoolManager
        if self.proxy is None:
            manager = urllib3.PoolManager(**options)
        else:
            auth = urllib3.util.parse_url(self.proxy).auth
            headers = urllib3.make_headers(proxy_basic_auth=auth) if auth else None
            manager = urllib3.ProxyManager(self.proxy, proxy_headers=headers, **options)
        manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        with self._lock:
            self._managers.append(manager)
        if self.proxy is None:
            # The pool itself, addressed by path: the manager would parse the URL and look
            # the pool up again on every request.
            pool = manager.connection_from_url(self.base_url)
            prefix = self._prefix

            def sender(path: str, **kwargs: Any) -> Any:
                return pool.urlopen("POST", prefix + path, **kwargs)

        else:
            base_url = self.base_url

            def sender(path: str, **kwargs: Any) -> Any:
                return manager.urlopen("POST", base_url + path, **kwargs)

        self._local.sender = sender
        return sender

    def post(self, path: str, body: bytes, headers: Mapping[str, str], *, what: str) -> HttpAnswer:
        _progress.written = False
        try:
            # The body is read here, not by urlopen (preload_content), and as it came
            # (decode_content off: we ask for no encoding, and an answer is a few hundred bytes):
            # urllib3's preloading sets up a decoder and reads through more layers: 2.4% of the
            # adapter's instructions per message (callgrind, 1,000 sends to nginx).
            response = self._sender()(
                path,
                body=body,
                headers=headers,
                retries=_NO_RETRIES,
                redirect=False,
                timeout=self._timeout,
                preload_content=False,
                decode_content=False,
            )
            try:
                data = response.read()
            finally:
                # Back to the pool (urllib3 does it too once the body is read in full; after a
                # failed read it closes the connection instead).
                response.release_conn()
        except HTTPError as exc:
            raise self._failure(exc, what=what) from exc
        return HttpAnswer(response.status, response.headers, data)

    def _failure(self, exc: HTTPError, *, what: str) -> RetryableError | UnknownOutcomeError:
        via = f" through the proxy {_redact(self.proxy)}" if self.proxy else ""
        if isinstance(exc, NewConnectionError | ConnectTimeoutError | ProxyError):
            return RetryableError(f"{what}: could not connect to {self.base_url}{via}: {exc}")
        if isinstance(exc, SSLError) and not getattr(_progress, "written", False):
            return RetryableError(
                f"{what}: could not connect to {self.base_url}{via}: TLS failed "
                f"(certificate verification or handshake): {exc}"
            )
        if not getattr(_progress, "written", False):
            # The server cannot have acted on a request it did not receive in full.
            return RetryableError(
                f"{what}: connection to {self.base_url}{via} failed while sending: {exc}"
            )
        if isinstance(exc, ReadTimeoutError):
            return UnknownOutcomeError(
                f"{what}: no answer from {self.base_url} within {self.read_timeout:g}s after "
                "the request was sent; it may have been accepted: not resending"
            )
        return UnknownOutcomeError(
            f"{what}: {self.base_url} closed the connection after the request was sent "
            f"({exc}); it may have been accepted: not resending"
        )

    def close(self) -> None:
        with self._lock:
            managers, self._managers = self._managers, []
        for manager in managers:
            manager.clear()
        self._local = threading.local()
