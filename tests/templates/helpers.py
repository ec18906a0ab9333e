"""Shared bits of the template tests: the repository's folders and a renderer factory."""

from __future__ import annotations

from pathlib import Path

from engine.consent.unsubscribe import UnsubscribeSigner
from engine.templates import Renderer

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "templates"
CAMPAIGNS = REPO / "campaigns"
POSTAL = "Example Rewards & Co, 100 Main Street, Springfield, IL 62701, USA"
PUBLIC_URL = "https://campaigns.example.org"
SIGNER = UnsubscribeSigner(b"test-key-" * 4)


def renderer(templates_dir: Path = TEMPLATES) -> Renderer:
    return Renderer(
        templates_dir, postal_address=POSTAL, public_url=PUBLIC_URL, unsubscribe_signer=SIGNER
    )


def write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
