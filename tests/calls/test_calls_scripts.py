"""Call scripts are Jinja templates in templates/calls/ with locale variants: the sheet shows
the script in the participant's language, falling back to the default one."""

from __future__ import annotations

import pytest
from calls_helpers import TEST_NOW, make_world, unit

from engine.app import App
from engine.calls.scripts import serve_next


@pytest.mark.parametrize(
    ("locale", "opening"),
    [
        ("es", "LLAMADA DE RENOVACIÓN"),
        ("es-MX", "LLAMADA DE RENOVACIÓN"),
        ("fr", "RENEWAL CALL"),  # no French variant: the default script
        (None, "RENEWAL CALL"),
    ],
)
def test_the_script_is_in_the_participants_language(
    app: App, locale: str | None, opening: str
) -> None:
    w = make_world(app)
    w.agent("ana")
    task = w.task(w.member(locale=locale, first_name="Lucía", last_name="Gómez"))
    with unit(app) as s:
        served = serve_next(s, "ana", settings=app.settings, at=TEST_NOW)
    assert served is not None and served.sheet.task_id == task
    script = served.sheet.script or ""
    assert script.startswith(opening)
    assert "Lucía Gómez" in script  # rendered with the participant's data
