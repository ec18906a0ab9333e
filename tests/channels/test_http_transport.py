"""The email transport (urllib3): proxies from the environment, certificate verification, and
whether a failure is retryable or an unknown outcome. Against real local servers."""

from __future__ import annotations

import datetime as dt
import http.client
import ipaddress
import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_channels_sendgrid import API_KEY, email

from engine.channels.base import RetryableError, SendResult
from engine.channels.http_transport import PooledHttpClient, proxy_for
from engine.channels.sendgrid import SendGridChannel
from engine.clock import FrozenClock
from engine.errors import ConfigError
from engine.testing.fake_sendgrid import FakeSendGrid

_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "REQUEST_METHOD")


@pytest.fixture(autouse=True)
def _no_proxy_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


class ForwardingProxy:
    """A plain HTTP forward proxy (absolute-URI requests, no CONNECT): it records the URL of
    each request and passes it on to the origin over its own keep-alive connection."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.authorizations: list[str | None] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                target = urlsplit(self.path)  # absolute: http://host:port/path
                proxy.seen.append(self.path)
                proxy.authorizations.append(self.headers.get("Proxy-Authorization"))
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("proxy-authorization", "proxy-connection", "host")
                }
                origin = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
                try:
                    origin.request("POST", target.path, body=body, headers=headers)
                    answer = origin.getresponse()
                    data = answer.read()
                finally:
                    origin.close()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("content-length", "connection", "server", "date"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.block_on_close = False
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> ForwardingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def server() -> Iterator[FakeSendGrid]:
    with FakeSendGrid(API_KEY) as fake:
        yield fake


def _send_one(url: str, clock: FrozenClock) -> SendResult:
    channel = SendGridChannel(API_KEY, host=url, clock=clock, read_timeout=10)
    try:
        return channel.send(email())
    finally:
        channel.close()


def test_email_goes_through_the_proxy_the_environment_names(
    server: FakeSendGrid, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ForwardingProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://ops:s3cret@"))
        result = _send_one(server.url, clock)

    assert proxy.seen == [f"{server.url}/v3/mail/send"]  # the absolute URI: a proxied request
    assert proxy.authorizations == ["Basic b3BzOnMzY3JldA=="]  # ops:s3cret from the URL
    [request] = server.requests  # and SendGrid got it, body and key intact
    assert request.contract_errors == () and request.answered == 202
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert result.provider_message_id == request.answer_headers["X-Message-Id"]


def test_no_proxy_sends_straight_to_the_host(
    server: FakeSendGrid, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ForwardingProxy() as proxy:
        monkeypatch.setenv("http_proxy", proxy.url)
        monkeypatch.setenv("no_proxy", "localhost,127.0.0.1")
        _send_one(server.url, clock)
    assert proxy.seen == []
    assert [r.answered for r in server.requests] == [202]


def test_proxy_selection_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "proxy.corp.example:3128")
    monkeypatch.setenv("NO_PROXY", ".internal.example")
    assert proxy_for("https://api.sendgrid.com") == "http://proxy.corp.example:3128"
    assert proxy_for("https://mail.internal.example") is None
    assert proxy_for("http://api.sendgrid.com") is None


def test_an_unreachable_proxy_is_retryable_and_names_the_proxy(
    clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _free_port()
    monkeypatch.setenv("HTTPS_PROXY", f"http://user:pw@127.0.0.1:{port}")
    with pytest.raises(RetryableError, match="could not connect") as caught:
        _send_one("https://api.sendgrid.com", clock)
    assert f"through the proxy http://127.0.0.1:{port}" in str(caught.value)
    assert "pw" not in str(caught.value)  # the proxy's password is never printed


def test_a_socks_proxy_is_refused_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "socks5://127.0.0.1:1080")
    with pytest.raises(ConfigError, match="only http:// and https:// proxies"):
        PooledHttpClient("https://api.sendgrid.com")


def _free_port() -> int:
    with socket.socket() as probe:  # free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ---------------------------------------------------------------- a request cut while sending


def test_a_connection_reset_while_writing_is_retryable() -> None:
    """The server reads the head, then resets the connection before the body is in: it cannot
    have acted on the request, so resending is safe (not an unknown outcome)."""
    listener = socket.create_server(("127.0.0.1", 0))
    heads: list[bytes] = []

    def reset_after_the_head() -> None:
        connection, _ = listener.accept()
        with connection:
            head = b""
            while b"\r\n\r\n" not in head:
                head += connection.recv(4096)
            heads.append(head)
            # Linger 0: close with a reset, leaving the body unread.
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    thread = threading.Thread(target=reset_after_the_head, daemon=True)
    thread.start()
    client = PooledHttpClient(f"http://127.0.0.1:{listener.getsockname()[1]}", read_timeout=10)
    body = b"x" * (48 * 1024 * 1024)  # more than the sockets' buffers on both sides hold
    try:
        with pytest.raises(RetryableError, match="failed while sending"):
            client.post("/v3/mail/send", body, {"Content-Type": "application/json"}, what="m1")
    finally:
        client.close()
        thread.join(timeout=10)
        listener.close()
    assert heads and heads[0].startswith(b"POST /v3/mail/send HTTP/1.1")


# ---------------------------------------------------------------- TLS


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (and its key): a CA nobody trusts by default."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "campaign test server")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "server.pem", folder / "server.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[FakeSendGrid, Path]]:
    cert_path, key_path = _certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    with FakeSendGrid(API_KEY, tls=context) as fake:
        yield fake, cert_path


def test_an_untrusted_certificate_is_refused_before_anything_is_sent(
    tls_server: tuple[FakeSendGrid, Path], clock: FrozenClock
) -> None:
    server, _ = tls_server
    assert server.url.startswith("https://")
    with pytest.raises(RetryableError, match=r"TLS failed.*certificate verif"):
        _send_one(server.url, clock)
    assert server.requests == []  # the body never left


def test_a_certificate_the_machine_trusts_is_accepted(
    tls_server: tuple[FakeSendGrid, Path], clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, cert_path = tls_server
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))  # as a company CA bundle is installed
    result = _send_one(server.url, clock)
    [request] = server.requests
    assert request.answered == 202
    assert result.provider_message_id == request.answer_headers["X-Message-Id"]
