"""A real program's email goes out under its own name and postal address, never the demo's.

The settings' defaults are the demo's sender and address so that `campaign demo` runs anywhere;
marketing email with them (or with no postal address: CAN-SPAM and its kin require one) would
be sent in someone else's name. Pure: a function of the settings' two values and the campaign.
"""

from __future__ import annotations

from collections.abc import Iterable
from email.utils import parseaddr

from engine.definitions.schema import CampaignDefinition
from engine.errors import ConfigError
from engine.examples import EXAMPLE_PROGRAM_KEY
from engine.settings import DEMO_EMAIL_FROM, DEMO_POSTAL_ADDRESS, Settings

HOW_TO_SET = (
    "set email_from and postal_address in campaign.toml "
    "(or CAMPAIGN_EMAIL_FROM / CAMPAIGN_POSTAL_ADDRESS)"
)


def sender_identity_problem(
    *, program: str | None, channels: Iterable[str], email_from: str, postal_address: str
) -> str | None:
    """One line saying what to set, or None when this campaign may send email as configured.

    The demo program keeps the demo identity; a campaign without email steps needs neither.
    """
    if program == EXAMPLE_PROGRAM_KEY or "email" not in set(channels):
        return None
    problems = []
    if email_from.strip() == DEMO_EMAIL_FROM:
        problems.append(f"the sender is the demo's ({parseaddr(DEMO_EMAIL_FROM)[1]})")
    elif "@" not in parseaddr(email_from)[1]:
        problems.append(f"the sender {email_from.strip()!r} is not an email address")
    if not postal_address.strip():
        problems.append("there is no postal address")
    elif postal_address.strip() == DEMO_POSTAL_ADDRESS:
        problems.append("the postal address is the demo's")
    if not problems:
        return None
    who = f"program {program!r}" if program else "this campaign"
    return (
        f"{who} cannot send email yet: {' and '.join(problems)}; {HOW_TO_SET} to your program's own"
    )


def launch_refusal(definition: CampaignDefinition, settings: Settings) -> str | None:
    """The one line `launch`, the tick and the scheduler give for a campaign they refuse to
    launch because its email would go out in the demo's name; None when it may launch."""
    problem = sender_identity_problem(
        program=definition.program,
        channels=definition.channels,
        email_from=settings.email_from,
        postal_address=settings.postal_address,
    )
    return None if problem is None else f"{definition.name}: not launched: {problem}"


def require_sender_identity(definition: CampaignDefinition, settings: Settings) -> None:
    """Refuse to launch a campaign that would send email in the demo's name."""
    refusal = launch_refusal(definition, settings)
    if refusal is not None:
        raise ConfigError(refusal)
