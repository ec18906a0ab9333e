"""Load report subscription files (``reports/*.yaml``) with every mistake reported as
``file:line field: message``, through the campaign loader's YAML reading, line map and error
translation (engine/definitions/loader.py), with the subscription schema as the root."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from engine.definitions.loader import (
    SUFFIX,
    _translate,
    raise_errors,
    read_definition_file,
    read_mapping,
)
from engine.errors import DefinitionError, NotFoundError
from engine.subscriptions.schema import Subscription


@dataclass(frozen=True)
class LoadedSubscription:
    path: Path
    subscription: Subscription
    content_hash: str

    @property
    def name(self) -> str:
        return self.subscription.name


def load_subscription(path: Path | str) -> LoadedSubscription:
    """Read and validate one subscription file; DefinitionError(s) name file:line field."""
    source, data = read_definition_file(Path(path), "report subscription file")
    return _parse(source, str(path), data)


@functools.lru_cache(maxsize=64)
def _parse(source: str, where: str, data: bytes) -> LoadedSubscription:
    # The tick reads every subscription file each minute; unchanged text is parsed once.
    return parse_subscription(source, where, expected_name=Path(where).stem, data=data)


def parse_subscription(
    source: str, where: str, *, expected_name: str | None = None, data: bytes | None = None
) -> LoadedSubscription:
    plain, lines, errors = read_mapping(
        source,
        where,
        empty="expected a subscription",
        fields="subscription fields (name:, ...)",
        file_kind="a report subscription file",
    )
    try:
        subscription = Subscription.model_validate(plain)
    except ValidationError as exc:
        errors.extend(_translate(where, exc.errors(), lines, Subscription))
        raise_errors(errors)
        raise AssertionError("unreachable") from exc
    if expected_name is not None and subscription.name != expected_name:
        errors.append(
            DefinitionError(
                where,
                lines.get(("name",)),
                "name",
                f"{subscription.name!r} must equal the file name {expected_name!r}",
            )
        )
    raise_errors(errors)
    raw = data if data is not None else source.encode("utf-8")
    return LoadedSubscription(Path(where), subscription, hashlib.sha256(raw).hexdigest())


def subscription_paths(reports_dir: Path) -> list[Path]:
    """Every ``*.yaml`` in the reports folder, by name (none when there is no folder)."""
    if not reports_dir.is_dir():
        return []
    return sorted(reports_dir.glob(f"*{SUFFIX}"))


def load_named(reports_dir: Path, name: str) -> LoadedSubscription:
    path = reports_dir / f"{name}{SUFFIX}"
    if "/" in name or "\\" in name or not path.is_file():
        available = ", ".join(p.stem for p in subscription_paths(reports_dir)) or "none"
        raise NotFoundError(
            f"no report subscription {name!r} in {reports_dir} (available: {available})"
        )
    return load_subscription(path)


__all__ = [
    "LoadedSubscription",
    "load_named",
    "load_subscription",
    "parse_subscription",
    "subscription_paths",
]
