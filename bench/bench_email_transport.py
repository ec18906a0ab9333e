"""Email transport: the SendGrid SDK's own loop vs our pooled keep-alive clients.

Sends N messages to the local fake SendGrid server (in its own process; contract validation
off, so the server measures transport, not jsonschema) three ways and reports msgs/s:

- sdk:            SendGridAPIClient(host=...).send(Mail) -- python_http_client, which opens a
                  new connection per request;
- pooled-http:    SendGridChannel (the helpers' body shape, one persistent keep-alive
                  HTTP/1.1 connection per thread) -- what the engine uses;
- pooled-requests: the same bodies over one requests.Session.

Run: .venv/bin/python bench/bench_email_transport.py [-n 2000] [--rounds 3]
The fake server is Python (tops out near 7k req/s here): treat numbers as relative.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event

import requests
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    CustomArg,
    From,
    Header,
    HtmlContent,
    Mail,
    Personalization,
    PlainTextContent,
    Subject,
    To,
)

from engine.channels.base import OutboundEmail
from engine.channels.sendgrid import SendGridChannel, build_mail
from engine.testing_providers import FakeSendGrid

API_KEY = "SG.bench-key"
HTML = "<p>" + "Your points are waiting. " * 40 + "</p>"  # ~1 KB body, like a real email


def _message(i: int) -> OutboundEmail:
    return OutboundEmail(
        message_id=f"bench-{i}",
        to_email=f"member{i}@example.com",
        to_name=f"Member {i}",
        from_email="rewards@example.com",
        from_name="Rewards",
        subject="Your points are waiting",
        text="Your points are waiting.",
        html=HTML,
        headers={
            "List-Unsubscribe": f"<https://example.com/u/{i}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )


def _sdk_mail(message: OutboundEmail) -> Mail:
    mail = Mail()
    mail.from_email = From(message.from_email, message.from_name)
    personalization = Personalization()
    personalization.add_to(To(message.to_email, message.to_name))
    personalization.add_custom_arg(CustomArg("message_id", message.message_id))
    for name, value in message.headers.items():
        personalization.add_header(Header(name, value))
    mail.add_personalization(personalization)
    mail.subject = Subject(message.subject)
    mail.add_content(PlainTextContent(message.text))
    mail.add_content(HtmlContent(message.html))
    return mail


def bench_sdk(url: str, messages: list[OutboundEmail]) -> None:
    client = SendGridAPIClient(API_KEY, host=url)
    for message in messages:
        response = client.send(_sdk_mail(message))
        assert response.status_code == 202


def bench_pooled_http(url: str, messages: list[OutboundEmail]) -> None:
    channel = SendGridChannel(API_KEY, host=url)
    try:
        for message in messages:
            channel.send(message)
    finally:
        channel.close()


def bench_pooled_requests(url: str, messages: list[OutboundEmail]) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    with requests.Session() as session:
        for message in messages:
            body = json.dumps(build_mail(message), separators=(",", ":")).encode()
            response = session.post(f"{url}/v3/mail/send", data=body, headers=headers, timeout=30)
            assert response.status_code == 202


MODES: dict[str, Callable[[str, list[OutboundEmail]], None]] = {
    "sdk": bench_sdk,
    "pooled-http": bench_pooled_http,
    "pooled-requests": bench_pooled_requests,
}


def _serve(connection: Connection, stop: Event) -> None:
    with FakeSendGrid(API_KEY, validate=False, record=False) as server:
        connection.send(server.url)
        stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="messages per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    messages = [_message(i) for i in range(args.n)]
    results: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    # The server runs in its own process: sharing our GIL would slow both sides unevenly.
    stop = multiprocessing.Event()
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.Process(target=_serve, args=(theirs, stop), daemon=True)
    process.start()
    try:
        url = ours.recv()
        for _ in range(args.rounds):
            for mode, run in MODES.items():  # interleaved, so drift hits every mode alike
                started, started_cpu = time.perf_counter(), time.process_time()
                run(url, messages)
                results[mode].append(args.n / (time.perf_counter() - started))
                cpu[mode].append((time.process_time() - started_cpu) / args.n * 1e6)
    finally:
        stop.set()
        process.join(timeout=10)
    print(f"{args.n} messages x {args.rounds} rounds against the local fake SendGrid")
    # Client CPU per message is what the sender itself costs, whatever the server can take.
    print(f"{'mode':<16} {'median msgs/s':>14} {'min':>8} {'max':>8} {'client CPU us/msg':>18}")
    for mode, rates in results.items():
        print(
            f"{mode:<16} {statistics.median(rates):>14.0f} {min(rates):>8.0f} "
            f"{max(rates):>8.0f} {statistics.median(cpu[mode]):>18.0f}"
        )
    sdk = statistics.median(results["sdk"])
    pooled = statistics.median(results["pooled-http"])
    print(f"pooled-http / sdk: {pooled / sdk:.1f}x")


if __name__ == "__main__":
    main()
