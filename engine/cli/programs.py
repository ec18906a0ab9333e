"""`campaign programs ...`: the loyalty and membership programs participants belong to."""

from __future__ import annotations

from typing import Any

import click

from engine.cli.common import (
    CliState,
    emit_json,
    json_option,
    pass_state,
    reading_session,
    render_table,
    writing,
)


@click.group("programs")
def programs_group() -> None:
    """Client programs (each participant belongs to one)."""


def consent_default_option(help_text: str) -> Any:
    return click.option(
        "--consent-default",
        "consent_default",
        metavar="CHANNEL=yes|no",
        multiple=True,
        help=help_text,
    )


@programs_group.command("add")
@click.argument("key")
@click.option("--name", required=True, help="Display name, used in messages.")
@click.option("--timezone", help="Program default IANA zone [default: settings].")
@click.option("--region", help="Phone region for numbers without + [default: settings].")
@click.option(
    "--sms-opt-out-notice/--no-sms-opt-out-notice",
    default=True,
    show_default=True,
    help="Append the opt-out sentence to the first SMS of each campaign.",
)
@click.option(
    "--holidays",
    metavar="CALENDAR",
    help="Public-holiday calendar business days skip: a country, optionally with a "
    "subdivision (US, US-CA, CN, GB-SCT) [default: none, Monday to Friday].",
)
@consent_default_option(
    "The program states consent on sms or call for members who did not (sms=yes; "
    "repeatable): their consent not stated counts as yes. A stated no, an opt-out or a "
    "suppression always wins [default: not set, not stated counts as no]."
)
@json_option
@pass_state
def programs_add(
    state: CliState,
    key: str,
    name: str,
    timezone: str | None,
    region: str | None,
    sms_opt_out_notice: bool,
    holidays: str | None,
    consent_default: tuple[str, ...],
    as_json: bool,
) -> None:
    """Create a program KEY."""
    from engine import programs
    from engine.consent.defaults import describe, parse_consent_defaults

    choices = parse_consent_defaults(consent_default)

    settings = state.settings
    with writing(state) as session:
        program = programs.add_program(
            session,
            key=key,
            name=name,
            timezone=timezone or settings.default_timezone,
            region=region or settings.default_region,
            at=state.app().clock.now(),
            sms_opt_out_notice=sms_opt_out_notice,
            holidays=holidays,
            consent_default=choices,
        )
        stated = describe(program) if choices else None
        result = {
            "key": program.key,
            "name": program.name,
            "timezone": program.timezone,
            "region": program.region,
            "sms_opt_out_notice": program.sms_opt_out_notice,
            "holidays": program.holidays,
            "consent_default": programs.program_details(session, key)["consent_default"],
        }
    if as_json:
        emit_json(result)
    else:
        calendar = f", {result['holidays']} holidays" if result["holidays"] else ""
        click.echo(
            f"Program {key!r} created ({result['timezone']}, region {result['region']}{calendar})."
        )
        if stated:
            click.echo(f"Program {key!r}: consent default {stated}.")


@programs_group.command("list")
@json_option
@pass_state
def programs_list(state: CliState, as_json: bool) -> None:
    """List programs with their participant counts."""
    from engine import programs

    with reading_session(state) as session:
        rows = programs.list_programs(session)
    if as_json:
        emit_json(rows)
    else:
        render_table(
            "Programs",
            ["key", "name", "timezone", "region", "participants", "SMS opt-out notice", "holidays"],
            [
                (
                    r.key,
                    r.name,
                    r.timezone,
                    r.region,
                    r.participants,
                    "on" if r.sms_opt_out_notice else "off",
                    r.holidays or "none (Mon-Fri)",
                )
                for r in rows
            ],
        )


@programs_group.command("set")
@click.argument("key")
@click.option(
    "--sms-opt-out-notice/--no-sms-opt-out-notice",
    default=None,
    help="Append (or not) the opt-out sentence to the first SMS of each campaign.",
)
@click.option(
    "--holidays",
    metavar="CALENDAR",
    help="Public-holiday calendar business days skip (US, US-CA, CN, GB-SCT...); 'none' "
    "for Monday to Friday.",
)
@click.option(
    "--shown-before-verification",
    "shown_fields",
    metavar="FIELDS",
    help="Account fields the console shows before the agent records a verified identity, "
    "a comma list (tier,status,points_balance,...,activity,contacts,case); 'default' for "
    "name, language, local time and tier.",
)
@consent_default_option(
    "State (sms=yes) or withdraw (sms=no) the program's consent on sms or call for members "
    "who did not state theirs; repeatable. A stated no, an opt-out or a suppression always wins."
)
@json_option
@pass_state
def programs_set(
    state: CliState,
    key: str,
    sms_opt_out_notice: bool | None,
    holidays: str | None,
    shown_fields: str | None,
    consent_default: tuple[str, ...],
    as_json: bool,
) -> None:
    """Change settings of program KEY (messages already queued keep their text; retries
    already scheduled keep their time)."""
    from engine import programs
    from engine.calls.verification import shown_before_verification
    from engine.consent.defaults import describe, parse_consent_defaults

    if (
        sms_opt_out_notice is None
        and holidays is None
        and shown_fields is None
        and not consent_default
    ):
        raise click.UsageError(
            "nothing to change: give --sms-opt-out-notice (or its --no- form), --holidays, "
            "--shown-before-verification or --consent-default"
        )
    choices = parse_consent_defaults(consent_default)
    with writing(state) as session:
        if choices:
            program = programs.set_consent_default(
                session, key, choices, at=state.app().clock.now()
            )
        if sms_opt_out_notice is not None:
            program = programs.set_sms_opt_out_notice(session, key, sms_opt_out_notice)
        if holidays is not None:
            code = None if holidays.strip().lower() in ("none", "") else holidays
            program = programs.set_holidays(session, key, code)
        if shown_fields is not None:
            fields = None if shown_fields.strip().lower() in ("default", "") else shown_fields
            program = programs.set_shown_before_verification(session, key, fields)
        calendar = program.holidays
        before = sorted(shown_before_verification(program))
        stated = describe(program)
        result = {
            "key": program.key,
            "sms_opt_out_notice": program.sms_opt_out_notice,
            "holidays": program.holidays,
            "shown_before_verification": before,
            "consent_default": programs.program_details(session, key)["consent_default"],
        }
    if as_json:
        emit_json(result)
    else:
        if sms_opt_out_notice is not None:
            state_word = "on" if sms_opt_out_notice else "off"
            click.echo(f"Program {key!r}: SMS opt-out notice {state_word}.")
        if holidays is not None:
            shown = calendar or "none (business days are Monday to Friday)"
            click.echo(f"Program {key!r}: holiday calendar {shown}.")
        if shown_fields is not None:
            click.echo(f"Program {key!r}: shown before verification: {', '.join(before)}.")
        if choices:
            click.echo(f"Program {key!r}: consent default {stated}.")


@programs_group.command("show")
@click.argument("key")
@json_option
@pass_state
def programs_show(state: CliState, key: str, as_json: bool) -> None:
    """Show program KEY's settings: zone, phone region, SMS opt-out notice, holiday calendar,
    consent default (whether a consent not stated counts as yes, and since when) and the
    account fields the console shows before verification."""
    from engine import programs

    with reading_session(state) as session:
        details = programs.program_details(session, key)
    if as_json:
        emit_json(details)
        return
    defaults = details["consent_default"]
    consent = ", ".join(
        f"{c} yes (set on {since:%Y-%m-%d})" if since else f"{c} not set (not stated counts as no)"
        for c, since in defaults.items()
    )
    click.echo(f"Program {details['key']}: {details['name']}")
    click.echo(f"  time zone: {details['timezone']}, phone region {details['region']}")
    click.echo(f"  participants: {details['participants']:,}")
    click.echo(f"  SMS opt-out notice: {'on' if details['sms_opt_out_notice'] else 'off'}")
    click.echo(f"  holiday calendar: {details['holidays'] or 'none (Monday to Friday)'}")
    click.echo(f"  consent default: {consent}")
    shown = ", ".join(details["shown_before_verification"])
    click.echo(f"  shown before verification: {shown}")
