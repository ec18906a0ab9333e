"""Email transport: the engine's SendGrid channel against its floor and the SDK, in one run.

Sends N messages to one local server three ways, interleaved round by round so that drift
hits every mode alike, and prints msgs/s, client CPU per message and the ratios:

- bare (the floor): one keep-alive ``http.client`` connection (TCP_NODELAY) POSTing bodies
  serialised beforehand: the least a Python sender can do per message;
- sdk:   ``SendGridAPIClient(host=...).send(Mail)`` built with the helpers: what the official
         library does (python_http_client opens a connection per request);
- engine: ``SendGridChannel.send`` (engine/channels/sendgrid.py): builds the body of each
         message and POSTs it over urllib3 with a keep-alive connection per thread
         (engine/channels/http_transport.py): what the dispatcher calls.

The server is nginx when installed (``apt-get install nginx-light``; answers 202 with an
X-Message-Id and reads no body: it measures the sender), else the Python fake SendGrid in its
own process (validation off; it tops out near 7k req/s here, so the ratios are then bounded by
the server and say less). Goals (issue #20): engine >= 0.6x bare, >= 3x sdk.

Run: .venv/bin/python bench/bench_email_transport.py [-n 3000] [--rounds 3] [--no-nginx]
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_dispatch import sink  # noqa: E402  (bench/ is this script's folder)
from sendgrid import SendGridAPIClient  # noqa: E402
from sendgrid.helpers.mail import (  # noqa: E402
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

from engine.channels.base import OutboundEmail  # noqa: E402
from engine.channels.sendgrid import MAIL_SEND, SendGridChannel, build_mail  # noqa: E402

API_KEY = "SG.bench-key"
HTML = "<p>" + "Your points are waiting. " * 40 + "</p>"  # ~1 KB body, like a real email
GOAL_VS_BARE = 0.6
GOAL_VS_SDK = 3.0


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
        custom_args={"campaign": "bench"},
    )


def _sdk_mail(message: OutboundEmail) -> Mail:
    mail = Mail()
    mail.from_email = From(message.from_email, message.from_name)
    personalization = Personalization()
    personalization.add_to(To(message.to_email, message.to_name))
    for key, value in message.custom_args.items():
        personalization.add_custom_arg(CustomArg(key, value))
    for name, value in message.headers.items():
        personalization.add_header(Header(name, value))
    mail.add_personalization(personalization)
    mail.subject = Subject(message.subject)
    mail.add_content(PlainTextContent(message.text))
    mail.add_content(HtmlContent(message.html))
    return mail


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def bench_bare(url: str, messages: list[OutboundEmail]) -> tuple[float, float]:
    bodies = [json.dumps(build_mail(m), separators=(",", ":")).encode() for m in messages]
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    connection.connect()
    # http.client writes the head and then the body: without TCP_NODELAY the body waits on
    # Nagle for the head's (delayed) ACK, and the floor would be set by the kernel's timers.
    connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    started = _clocks()  # bodies are built before the clocks start: this is the floor
    try:
        for body in bodies:
            connection.request("POST", MAIL_SEND, body=body, headers=headers)
            answer = connection.getresponse()
            answer.read()
            assert answer.status == 202, answer.status
    finally:
        connection.close()
    return started


def bench_sdk(url: str, messages: list[OutboundEmail]) -> tuple[float, float]:
    started = _clocks()
    client = SendGridAPIClient(API_KEY, host=url)
    for message in messages:
        response = client.send(_sdk_mail(message))
        assert response.status_code == 202
    return started


def bench_engine(url: str, messages: list[OutboundEmail]) -> tuple[float, float]:
    started = _clocks()
    channel = SendGridChannel(API_KEY, host=url)
    try:
        for message in messages:
            channel.send(message)
    finally:
        channel.close()
    return started


# Each mode returns when its clocks started (wall, CPU); they stop when it returns.
MODES: dict[str, Callable[[str, list[OutboundEmail]], tuple[float, float]]] = {
    "bare": bench_bare,
    "sdk": bench_sdk,
    "engine": bench_engine,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-n", type=int, default=3000, help="messages per mode per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-nginx", action="store_true", help="use the Python fake server")
    args = parser.parse_args()
    messages = [_message(i) for i in range(args.n)]
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    with sink(prefer_nginx=not args.no_nginx) as (url, _twilio, server):
        for run in MODES.values():  # warm up: imports, first connections
            run(url, messages[:50])
        for _ in range(args.rounds):
            for mode, run in MODES.items():
                started, started_cpu = run(url, messages)
                ended, ended_cpu = _clocks()
                rates[mode].append(args.n / (ended - started))
                cpu[mode].append((ended_cpu - started_cpu) / args.n * 1e6)
    print(f"{args.n} messages x {args.rounds} rounds, server: {server} at {url}")
    print(f"{'mode':<8} {'median msgs/s':>14} {'min':>8} {'max':>8} {'client CPU us/msg':>18}")
    median = {mode: statistics.median(values) for mode, values in rates.items()}
    for mode, values in rates.items():
        print(
            f"{mode:<8} {median[mode]:>14.0f} {min(values):>8.0f} {max(values):>8.0f} "
            f"{statistics.median(cpu[mode]):>18.0f}"
        )
    vs_bare = median["engine"] / median["bare"]
    vs_sdk = median["engine"] / median["sdk"]
    cpu_median = {mode: statistics.median(values) for mode, values in cpu.items()}
    # The same ratios in client CPU per message: what the sender costs this machine, apart
    # from how the server and the other processes on the 2 cores share the time.
    cpu_vs_bare = cpu_median["bare"] / cpu_median["engine"]
    cpu_vs_sdk = cpu_median["sdk"] / cpu_median["engine"]
    print(
        f"engine / bare (floor): {vs_bare:.2f}x msgs/s, {cpu_vs_bare:.2f}x in CPU per message "
        f"(goal >= {GOAL_VS_BARE}x)"
    )
    print(
        f"engine / sdk:          {vs_sdk:.1f}x msgs/s, {cpu_vs_sdk:.1f}x in CPU per message "
        f"(goal >= {GOAL_VS_SDK}x)"
    )
    print(
        json.dumps(
            {
                "bench": "email_transport",
                "server": server,
                "messages": args.n,
                "rounds": args.rounds,
                "floor_bare_msgs_per_s": round(median["bare"]),
                "sdk_msgs_per_s": round(median["sdk"]),
                "engine_msgs_per_s": round(median["engine"]),
                "engine_vs_bare": round(vs_bare, 2),
                "engine_vs_sdk": round(vs_sdk, 2),
                "cpu_us_per_msg": {mode: round(value) for mode, value in cpu_median.items()},
                "engine_vs_bare_cpu": round(cpu_vs_bare, 2),
                "engine_vs_sdk_cpu": round(cpu_vs_sdk, 2),
                "goal_vs_bare_met": vs_bare >= GOAL_VS_BARE,
                "goal_vs_sdk_met": vs_sdk >= GOAL_VS_SDK,
            }
        )
    )


if __name__ == "__main__":
    main()
