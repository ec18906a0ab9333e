"""A campaign before it runs: `campaign validate`, `plan` (dry run), `explain` (one member),
`launch` and `preview` (exactly what one member would receive).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from engine.cli.common import (
    CliState,
    emit_json,
    json_option,
    pass_state,
    reading_session,
    render_table,
    show_value,
    writing,
)


@click.command("validate")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path, dir_okay=False))
@json_option
@pass_state
def validate_command(state: CliState, files: tuple[Path, ...], as_json: bool) -> None:
    """Check campaign files (default: every campaigns/*.yaml and reports/*.yaml) without a
    database: schema, templates, audience SQL; report subscriptions' schema. Prints "ok" or
    each error as file:line field: message; exits 1 on any error. When the database exists,
    SMS sizes follow its programs' opt-out notice setting (else the default: on)."""
    from engine.definitions.validation import ValidationReport, validate_campaigns
    from engine.programs import stored_sms_opt_out_notices
    from engine.subscriptions.validation import split_files, validate_subscriptions

    settings = state.settings
    campaign_files, report_files = split_files(list(files), settings.reports_dir)
    if files and not campaign_files:  # only subscription files named
        report = ValidationReport([], audience_checked=True)
    else:
        report = validate_campaigns(
            campaign_files,
            campaigns_dir=settings.campaigns_dir,
            templates_dir=settings.templates_dir,
            at=state.clock.now(),
            sms_opt_out_notices=stored_sms_opt_out_notices(settings.database_url),
            sender=(settings.email_from, settings.postal_address),
        )
    report.files.extend(
        validate_subscriptions(report_files if files else None, reports_dir=settings.reports_dir)
    )
    if as_json:
        emit_json(report.as_dict())
    else:
        for file in report.files:
            if file.ok:
                click.echo(f"{file.path}: ok")
            for error in file.errors:
                click.echo(str(error))
            for warning in file.warnings:
                click.echo(f"warning: {warning}")
        if not report.audience_checked:
            click.echo("note: engine.audience is not available; audiences were not compiled")
    if not report.ok:
        raise SystemExit(1)


def _campaign(state: CliState, name: str) -> Any:
    from engine.definitions.loader import load_campaign

    return load_campaign(state.settings.campaigns_dir, name)


def _at(state: CliState, loaded: Any, at: str | None) -> datetime:
    """--at in its own read-only transaction (a launch must start its own transaction)."""
    from engine.planning import resolve_at

    with reading_session(state) as session:
        return resolve_at(session, loaded, at, now=state.app().clock.now())


def _global_cap(state: CliState) -> Any:
    from engine.planning import GlobalCap

    return GlobalCap.from_settings(state.settings)


at_option: Callable[[Callable[..., Any]], Callable[..., Any]] = click.option(
    "--at",
    "at",
    metavar="TIME",
    help="Evaluate at this ISO 8601 time (naive = the program's time zone) [default: now].",
)


@click.command("plan")
@click.argument("name")
@at_option
@json_option
@pass_state
def plan_command(state: CliState, name: str, at: str | None, as_json: bool) -> None:
    """Dry run of campaign NAME: audience, exclusions by reason, groups, volumes, a sample.
    Changes nothing."""
    from engine.planning import plan

    loaded = _campaign(state, name)
    when = _at(state, loaded, at)
    with reading_session(state) as session:
        report = plan(
            session, loaded, at=when, global_cap=_global_cap(state), settings=state.settings
        )
    if as_json:
        emit_json(report)
        return
    click.echo(
        f"Plan for {report.campaign} (program {report.program}) at {report.at.isoformat()}"
        f" [definition {report.definition_hash[:12]}]"
    )
    click.echo(f"Audience: {report.audience:,}")
    render_table(
        "Excluded (each member under the first reason that applies)",
        ["reason", "why", "members"],
        [(show_value(e.reason), show_value(e.description), e.count) for e in report.exclusions],
    )
    click.echo(
        f"Eligible: {report.eligible:,} (treatment {report.treatment:,}, holdout {report.holdout:,}"
        f" = {report.holdout_percent}%)"
    )
    render_table(
        "Projected volume per step (treatment reachable on the step's channel)",
        ["step", "channel", "projected", "deadline", "already expired"],
        [(v.step_id, v.channel, v.projected, v.deadline, v.expired) for v in report.steps],
    )
    if report.sample:
        render_table(
            "Sample of eligible members",
            ["external_id", "group", "values"],
            [
                (
                    m.external_id,
                    m.group,
                    show_value("; ".join(f"{k}: {show_value(v)}" for k, v in m.values.items())),
                )
                for m in report.sample
            ],
        )
    if report.sms:
        render_table(
            f"SMS size for {report.sms[0].external_id} (sample member)",
            ["step", "encoding", "characters", "segments", "warning"],
            [
                (
                    z.step,
                    z.encoding or "-",
                    show_value(z.characters),
                    show_value(z.segments),
                    show_value(z.warning),
                )
                for z in report.sms
            ],
        )
        for z in report.sms:
            if z.warning is not None:
                click.echo(f"warning: step {z.step}: {z.warning}")
    if report.note:
        click.echo(f"note: {report.note}")


def _echo_tree(node: Any, depth: int = 1) -> None:
    mark = "yes" if node.passed else "no "
    actual = "" if node.children else f"  (actual: {show_value(node.actual)})"
    click.echo(f"{'  ' * depth}[{mark}] {node.condition}{actual}")
    for child in node.children:
        _echo_tree(child, depth + 1)


@click.command("explain")
@click.argument("name")
@click.argument("external_id")
@at_option
@json_option
@pass_state
def explain_command(
    state: CliState, name: str, external_id: str, at: str | None, as_json: bool
) -> None:
    """Why member EXTERNAL_ID would or would not be enrolled by campaign NAME."""
    from engine.planning import explain

    loaded = _campaign(state, name)
    when = _at(state, loaded, at)
    with reading_session(state) as session:
        result = explain(session, loaded, external_id, at=when, global_cap=_global_cap(state))
    if as_json:
        emit_json(result)
        return
    click.echo(f"{result.external_id} in {result.campaign} at {result.at.isoformat()}:")
    click.echo(f"  verdict: {result.verdict}")
    click.echo("Audience:")
    _echo_tree(result.audience)
    click.echo("Exclusions (in order):")
    for check in result.exclusions:
        flag = "EXCLUDED" if check.excluded else "ok"
        click.echo(f"  [{flag}] {check.reason}: {check.description}")
        click.echo(f"      actual: {show_value(check.actual)}")


@click.command("launch")
@click.argument("name")
@at_option
@json_option
@pass_state
def launch_command(state: CliState, name: str, at: str | None, as_json: bool) -> None:
    """Launch campaign NAME: create its run and enroll the eligible members. Safe to repeat:
    a second launch of the same one-off campaign or cron fire time enrolls nobody."""
    from engine.planning import launch
    from engine.sender_identity import require_sender_identity

    loaded = _campaign(state, name)
    require_sender_identity(loaded.definition, state.settings)
    when = _at(state, loaded, at)
    with writing(state) as session:
        result = launch(session, loaded, at=when, global_cap=_global_cap(state))
    if as_json:
        emit_json({**dataclasses.asdict(result), "message": result.message})
    else:
        click.echo(result.message)


@click.command("preview")
@click.argument("name")
@click.argument("step")
@click.argument("external_id")
@click.option(
    "--variant",
    help="A/B steps: render this variant [default: the member's own variant, assigned "
    "deterministically by weight, as the sender does].",
)
@json_option
@pass_state
def preview_command(
    state: CliState, name: str, step: str, external_id: str, variant: str | None, as_json: bool
) -> None:
    """Show exactly what member EXTERNAL_ID would receive for STEP of campaign NAME, in their
    locale: email subject, headers, text and HTML; SMS body, encoding and segments; or the
    call script. Sends nothing."""
    from engine.definitions.loader import load_campaign
    from engine.preview import preview

    loaded = load_campaign(state.settings.campaigns_dir, name)
    with reading_session(state) as session:
        result = preview(
            session,
            loaded,
            step,
            external_id,
            settings=state.settings,
            variant=variant,
            at=state.clock.now(),
            global_cap=_global_cap(state),
        )
    if as_json:
        emit_json(result)
        return
    # Said first: what follows is what they WOULD receive, were they enrolled and reachable.
    warnings = []
    if result.not_enrolled:
        warnings.append(f"NOT ENROLLED NOW: {result.not_enrolled}")
    if result.channel_closed:
        warnings.append(f"NOT REACHABLE NOW: {result.channel_closed}, so this step would skip them")
    for number, warning in enumerate(warnings, 1):
        click.echo(warning + ("; rendered all the same:" if number == len(warnings) else ""))
    chosen = f", variant {result.variant}" if result.variant else ""
    click.echo(
        f"{result.campaign} / {result.step} ({result.channel}, template {result.template}"
        f"{chosen}) for {result.external_id}, locale {result.locale or 'default'}"
    )
    if result.email is not None:
        email = result.email
        for key, value in email["headers"].items():
            click.echo(f"{key}: {value}")
        if email["template_id"]:
            click.echo(f"SendGrid dynamic template {email['template_id']} with data:")
            click.echo(json.dumps(email["dynamic_template_data"], indent=2, ensure_ascii=False))
        else:
            click.echo(f"Subject: {email['subject']}")
            click.echo("\n--- text ---")
            click.echo(email["text"])
            click.echo("--- html ---")
            click.echo(email["html"])
    if result.sms is not None:
        sms = result.sms
        click.echo(
            f"{sms['characters']} characters, {sms['encoding']}, {sms['segments']} segment(s)"
        )
        click.echo(sms["body"])
    if result.call is not None:
        click.echo(result.call["script"])
    for note in result.notes:
        click.echo(f"note: {note}")
