"""--log-format json / CAMPAIGN_LOG_FORMAT=json: one JSON object per log line, with the
structured fields the engine logs; text stays the default."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from cli import CliState, cli
from engine.app import App
from engine.clock import FrozenClock


@pytest.fixture
def root_logging() -> Iterator[None]:
    """The CLI reconfigures the root logger (force=True for JSON): put pytest's back after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("how", ["option", "env"])
def test_cli_logs_one_json_object_per_line(
    app: App, clock: FrozenClock, root_logging: None, how: str
) -> None:
    url = app.settings.database_url
    args = ["--debug", "--database-url", url, "runs", "show", "999"]
    env = {}
    if how == "option":
        args = ["--log-format", "json", *args]
    else:
        env = {"CAMPAIGN_LOG_FORMAT": "json"}
    result = CliRunner().invoke(cli, args, env=env, obj=CliState(overrides={}, clock=clock))

    assert result.exit_code == 1
    lines = _json_lines(result.stderr)
    errors = [line for line in lines if line["message"] == "engine error"]
    assert len(errors) == 1, result.stderr
    line = errors[0]
    assert line["level"] == "debug" and line["logger"] == "campaign"
    assert line["timestamp"].endswith("+00:00")
    assert "Traceback" in line["exception"] and "999" in line["exception"]
    # Every line on stderr that is a log line is JSON: only click's own error line is not.
    others = [x for x in result.stderr.splitlines() if x.strip() and not x.startswith("{")]
    assert others == [x for x in others if x.startswith("Error:")]


def test_text_stays_the_default(app: App, clock: FrozenClock, root_logging: None) -> None:
    args = ["--debug", "--database-url", app.settings.database_url, "runs", "show", "999"]
    result = CliRunner().invoke(cli, args, obj=CliState(overrides={}, clock=clock))
    assert result.exit_code == 1
    assert "Error:" in result.stderr
    assert _json_lines(result.stderr) == []


def test_a_bad_log_format_is_one_clear_line(root_logging: None) -> None:
    result = CliRunner().invoke(cli, ["--log-format", "xml", "runs", "list"])
    assert result.exit_code == 2
    assert "Invalid value for '--log-format'" in result.stderr
