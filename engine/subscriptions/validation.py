"""`campaign validate` for report subscription files: the schema with file:line errors, as
:class:`engine.definitions.validation.FileReport` entries beside the campaign files'."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from engine.definitions.loader import error_list
from engine.definitions.validation import FileReport
from engine.errors import DefinitionError, DefinitionErrors, EngineError
from engine.subscriptions.loader import load_subscription, subscription_paths


def is_subscription_file(path: Path, reports_dir: Path) -> bool:
    """A file in the reports folder (by place, so a file named on the command line counts)."""
    try:
        return path.resolve().parent == reports_dir.resolve()
    except OSError:
        return False


def split_files(files: Sequence[Path], reports_dir: Path) -> tuple[list[Path], list[Path]]:
    """(campaign files, subscription files) among the files named on the command line."""
    campaigns = [f for f in files if not is_subscription_file(f, reports_dir)]
    reports = [f for f in files if is_subscription_file(f, reports_dir)]
    return campaigns, reports


def validate_subscriptions(paths: Sequence[Path] | None, *, reports_dir: Path) -> list[FileReport]:
    """The given subscription files, or every one in ``reports_dir`` (none: no folder)."""
    reports = []
    for path in list(paths) if paths is not None else subscription_paths(reports_dir):
        report = FileReport(path=path)
        try:
            loaded = load_subscription(path)
        except (DefinitionError, DefinitionErrors) as exc:
            report.errors.extend(error_list(exc))
        except EngineError as exc:
            message = str(exc).removeprefix(f"{path}: ")
            report.errors.append(DefinitionError(str(path), None, "", message))
        else:
            report.name = loaded.name
            report.content_hash = loaded.content_hash
        reports.append(report)
    return reports


__all__ = ["is_subscription_file", "split_files", "validate_subscriptions"]
