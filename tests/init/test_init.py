"""`campaign init` and the packaged examples: a working folder from nothing, from any folder."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import CliState, cli
from engine.clock import FrozenClock
from engine.demo.run import STEPS, run_demo
from engine.examples import EXAMPLES_DIR
from init import TEST_NOW

REPO = Path(__file__).resolve().parents[2]
INIT = [
    "init",
    "nw",
    "--program",
    "northwind",
    "--name",
    "Northwind Rewards",
    "--timezone",
    "America/Chicago",
    "--email-from",
    "Northwind Rewards <rewards@northwind.example>",
    "--postal-address",
    "200 Lake Street, Chicago, IL 60601, USA",
]


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, list(args), obj=CliState(overrides={}, clock=FrozenClock(TEST_NOW))
    )
    return result.exit_code, result.output


@pytest.fixture
def empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """cwd: an empty folder outside the repository, with no settings from the environment."""
    for name in ("CAMPAIGN_CAMPAIGNS_DIR", "CAMPAIGN_TEMPLATES_DIR", "CAMPAIGN_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "empty"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def test_init_writes_a_folder_that_validates_at_once(
    empty: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, output = invoke(*INIT)
    assert code == 0, output
    folder = empty / "nw"
    settings = tomllib.loads((folder / "campaign.toml").read_text(encoding="utf-8"))
    assert settings["default_timezone"] == "America/Chicago"
    assert settings["email_from"] == "Northwind Rewards <rewards@northwind.example>"
    campaigns = sorted(path.name for path in (folder / "campaigns").glob("*.yaml"))
    assert campaigns == sorted(path.name for path in (REPO / "campaigns").glob("*.yaml"))
    for path in (folder / "campaigns").glob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        assert "program: northwind\n" in text and "program: demo" not in text
    templates = {p.relative_to(folder / "templates") for p in (folder / "templates").rglob("*.j2")}
    assert templates == {p.relative_to(REPO / "templates") for p in REPO.glob("templates/**/*.j2")}
    # The next commands, from the folder's creation to a launch.
    assert "  cd nw\n  campaign db upgrade\n" in output
    assert "campaign programs add northwind --name 'Northwind Rewards'" in output
    assert "campaign launch winback-inactive" in output
    monkeypatch.chdir(folder)
    code, output = invoke("validate")
    assert code == 0, output
    assert output.count(": ok") == 4


def test_init_overwrites_nothing_without_force(empty: Path) -> None:
    assert invoke(*INIT)[0] == 0
    edited = empty / "nw" / "campaigns" / "winback-inactive.yaml"
    edited.write_text("# mine\n", encoding="utf-8")
    (empty / "nw" / "templates" / "email" / "mine.txt.j2").write_text("mine", encoding="utf-8")
    code, output = invoke(*INIT)
    assert code == 1
    assert "already has campaign.toml" in output and "--force" in output
    assert len(output.strip().splitlines()) == 1
    assert edited.read_text(encoding="utf-8") == "# mine\n"
    code, output = invoke(*INIT, "--force")
    assert code == 0, output
    assert "program: northwind" in edited.read_text(encoding="utf-8")
    assert (empty / "nw" / "templates" / "email" / "mine.txt.j2").exists()  # not its file


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"--timezone": "Mars/Olympus"}, "--timezone 'Mars/Olympus' is not an IANA zone"),
        ({"--program": "North Wind"}, "program key 'North Wind'"),
        ({"--program": "demo"}, "is the demo's"),
        ({"--email-from": "Rewards Team <rewards@example.com>"}, "the demo's sender"),
        ({"--email-from": "nobody"}, "is not an email address"),
        ({"--postal-address": " "}, "--postal-address"),
    ],
)
def test_init_refuses_bad_values_and_writes_nothing(
    empty: Path, change: dict[str, str], expected: str
) -> None:
    args = list(INIT)
    for option, value in change.items():
        args[args.index(option) + 1] = value
    code, output = invoke(*args)
    assert code == 1
    assert expected in output and len(output.strip().splitlines()) == 1, output
    assert not (empty / "nw").exists()


def test_init_json(empty: Path) -> None:
    code, output = invoke(*INIT, "--json")
    assert code == 0, output
    result = json.loads(output)
    assert result["campaigns"] == [
        "activate-new",
        "points-expiring",
        "renewal-due",
        "winback-inactive",
    ]
    assert "campaign.toml" in result["written"] and result["overwritten"] == []


def test_every_example_file_is_package_data() -> None:
    """A wheel carries exactly the files the package-data globs name (through the symlinks to
    the repository's campaigns/ and templates/): every example must match one of them."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    globs = project["tool"]["setuptools"]["package-data"]["engine"]
    packaged = {p for pattern in globs for p in (REPO / "engine").glob(pattern) if p.is_file()}
    examples = [*REPO.glob("campaigns/*"), *(p for p in REPO.glob("templates/**/*") if p.is_file())]
    assert examples
    for example in examples:
        assert EXAMPLES_DIR / example.relative_to(REPO) in packaged, example


def test_demo_runs_from_an_empty_folder(empty: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`campaign demo`'s own run_demo, from an empty folder: the examples come with the package.
    (The calls, results and reports steps, which find nothing new, are left out for time.)"""
    steps = [step for step in STEPS if step.name not in ("calls", "results", "reports")]
    report = run_demo(Path("demo"), participants=120, clock=FrozenClock(TEST_NOW), steps=steps)
    launched = {figures.campaign: figures.run_id for figures in report.campaigns}
    assert set(launched) == {"activate-new", "points-expiring", "renewal-due", "winback-inactive"}
    assert all(launched.values())
    assert (empty / "demo" / "campaigns" / "winback-inactive.yaml").exists()
    assert any((empty / "demo" / "outbox").glob("*.eml"))  # the tick rendered the templates
    # The suggested commands run in the demo folder, whose campaign.toml names its database.
    assert report.next_commands[0] == "cd demo"
    monkeypatch.chdir(empty / "demo")
    code, output = invoke("runs", "list", "--json")
    assert code == 0, output
    assert set(launched.values()) <= {run["id"] for run in json.loads(output)}
