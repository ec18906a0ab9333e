"""Small campaign trees on disk for the definition tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

from engine.definitions.loader import DefinitionErrors, error_list, parse_definition
from engine.errors import DefinitionError

EMAIL_HTML = (
    "<p>Hi {{ participant.first_name or 'there' }}</p>\n"
    '<a href="{{ unsubscribe_url }}">x</a>\n'
    "{{ postal_address }}\n"
)
EMAIL_TXT = (
    "Hi {{ participant.first_name or 'there' }}\n{{ unsubscribe_url }}\n{{ postal_address }}\n"
)

VALID = """\
name: sample
program: demo
audience:
  all:
    - {field: status, eq: active}
    - {field: last_activity_at, older_than: 90d}
goal:
  events: [login]
  window: 30d
steps:
  - id: email-1
    channel: email
    template: hello
  - id: sms-1
    channel: sms
    template: hello
    delay: 3d
  - id: call-1
    channel: call
    script: hello
    delay: 7d
"""


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def errors_of(source: str, name: str = "sample") -> list[str]:
    """The rendered errors of a definition text (empty when it is valid)."""
    try:
        parse_definition(dedent(source), f"campaigns/{name}.yaml", expected_name=name)
    except (DefinitionError, DefinitionErrors) as exc:
        return [str(error) for error in error_list(exc)]
    return []


def make_tree(root: Path, campaigns: dict[str, str] | None = None) -> tuple[Path, Path]:
    """campaigns/ and templates/ under root with the `hello` templates of every channel."""
    campaigns_dir, templates_dir = root / "campaigns", root / "templates"
    for folder in ("email", "sms", "calls"):
        (templates_dir / folder).mkdir(parents=True)
    (templates_dir / "email" / "hello.subject.j2").write_text("Hello {{ program.name }}\n")
    (templates_dir / "email" / "hello.html.j2").write_text(EMAIL_HTML)
    (templates_dir / "email" / "hello.txt.j2").write_text(EMAIL_TXT)
    (templates_dir / "sms" / "hello.txt.j2").write_text(
        "{{ program.name }}: hi {{ participant.first_name or 'there' }}. Reply STOP to opt out\n"
    )
    (templates_dir / "calls" / "hello.txt.j2").write_text(
        "Call {{ participant.first_name or 'there' }}\n"
    )
    campaigns_dir.mkdir()
    for name, source in (campaigns if campaigns is not None else {"sample": VALID}).items():
        (campaigns_dir / f"{name}.yaml").write_text(dedent(source), encoding="utf-8")
    return campaigns_dir, templates_dir
