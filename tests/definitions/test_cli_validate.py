"""`campaign validate` end to end through the CLI; it needs no database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli

from .helpers import VALID, make_tree


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    make_tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CAMPAIGN_CAMPAIGNS_DIR", "campaigns")
    monkeypatch.setenv("CAMPAIGN_TEMPLATES_DIR", "templates")
    # A database that cannot be opened: validate must never touch it.
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", f"sqlite:///{tmp_path}/missing/dir/campaign.db")
    return tmp_path


def test_ok(tree: Path) -> None:
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 0, result.output
    assert result.output == "campaigns/sample.yaml: ok\n"
    assert not (tree / "missing").exists()


def test_failing_file_exits_1_with_file_line_field(tree: Path) -> None:
    (tree / "campaigns" / "broken.yaml").write_text(
        VALID.replace("name: sample", "name: broken").replace("delay: 3d", "delay: 3 dayz")
    )
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "campaigns/broken.yaml:17 steps[1].delay: '3 dayz' is not a duration; "
        "use e.g. '3d' or '36h'",
        "campaigns/sample.yaml: ok",
    ]


def test_named_files_only(tree: Path) -> None:
    (tree / "campaigns" / "broken.yaml").write_text("name: [\n")
    result = CliRunner().invoke(cli, ["validate", "campaigns/sample.yaml"])
    assert (result.exit_code, result.output) == (0, "campaigns/sample.yaml: ok\n")
    result = CliRunner().invoke(cli, ["validate", "campaigns/broken.yaml"])
    assert result.exit_code == 1
    assert result.output.startswith("campaigns/broken.yaml:2: YAML syntax error:")


def test_json(tree: Path) -> None:
    (tree / "campaigns" / "broken.yaml").write_text(
        VALID.replace("name: sample", "name: broken").replace("channel: sms", "channel: fax")
    )
    result = CliRunner().invoke(cli, ["validate", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["ok"] is False
    broken, sample = report["files"]
    assert sample == {
        "path": "campaigns/sample.yaml",
        "name": "sample",
        "ok": True,
        "content_hash": sample["content_hash"],
        "errors": [],
        "warnings": [],
    }
    assert len(sample["content_hash"]) == 64
    assert broken["ok"] is False and broken["name"] is None
    assert broken["errors"] == [
        {
            "path": "campaigns/broken.yaml",
            "line": 15,
            "field": "steps[1].channel",
            "message": "'fax' is not allowed; expected 'email', 'sms' or 'call'",
        }
    ]


def test_json_ok_exits_0(tree: Path) -> None:
    result = CliRunner().invoke(cli, ["validate", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output)["ok"] is True


def test_no_campaigns_folder_is_a_clean_error(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGN_CAMPAIGNS_DIR", "nowhere")
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 1
    assert "nowhere: no campaigns folder" in result.output
    assert "Traceback" not in result.output
