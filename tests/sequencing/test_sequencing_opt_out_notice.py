"""The program's sms_opt_out_notice decides whether the first SMS gets the opt-out sentence."""

from __future__ import annotations

from pathlib import Path

import pytest
from seq_helpers import HOUR, TEST_NOW, definition, launch, messages, unit

from engine.app import App
from engine.db.models import Program
from engine.sequencing import advance
from engine.testing.fakes import make_consent, make_participant

STEPS = [
    {"id": "sms-1", "channel": "sms", "template": "plain"},
    {"id": "sms-2", "channel": "sms", "template": "plain", "delay": "1d"},
]


@pytest.mark.parametrize("notice", [True, False])
def test_first_sms_notice_follows_the_program_setting(
    app: App, program: Program, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, notice: bool
) -> None:
    # A template without any opt-out wording, so only the renderer can add it.
    (tmp_path / "sms").mkdir()
    (tmp_path / "sms" / "plain.txt.j2").write_text("{{ program.name }}: points are waiting.")
    monkeypatch.setattr(
        app, "settings", app.settings.model_copy(update={"templates_dir": tmp_path})
    )
    with unit(app) as s:
        s.get(Program, program.id).sms_opt_out_notice = notice  # type: ignore[union-attr]
        member = make_participant(s, s.get(Program, program.id), at=TEST_NOW, external_id="N1")
        make_consent(s, member, channel="sms", status="opted_in", at=TEST_NOW)
    launch(app, definition(steps=STEPS))
    advance(app, at=TEST_NOW + HOUR)
    advance(app, at=TEST_NOW + 2 * 24 * HOUR)
    bodies = [m.content["body"] for m in messages(app)]
    assert len(bodies) == 2
    first, later = bodies
    assert first.endswith(" Reply STOP to opt out.") is notice
    assert "STOP" not in later  # only the first SMS of a campaign carries it
