"""The definition text a run was launched with, read back where it is read often (a claim,
a call sheet): with libyaml and pydantic only, without the loader's line map.

The text was validated by the loader (engine/definitions/loader.py) when the run was launched,
so the line numbers its messages need are rarely needed here; composing the node tree that
finds them in pure Python cost about 10 ms per run on every `calls next`. Should stored text
no longer validate (a schema made stricter since), the loader parses it again to say where.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from engine.definitions.schema import CampaignDefinition

# YAML 1.1 reads 10:00 as the base-60 number 600; in campaign files it is always a time, so
# these are PyYAML's int and float patterns without the base-60 forms.
_INT = re.compile(
    r"""^(?:[-+]?0b[0-1_]+
    |[-+]?0[0-7_]+
    |[-+]?(?:0|[1-9][0-9_]*)
    |[-+]?0x[0-9a-fA-F_]+)$""",
    re.X,
)
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_NUMBER_PATTERNS = {"tag:yaml.org,2002:int": _INT, "tag:yaml.org,2002:float": _FLOAT}
# A copy of SafeLoader's resolvers (in their order, which decides ties) with our number
# patterns: what both loaders resolve plain scalars with.
IMPLICIT_RESOLVERS = {
    first: [(tag, _NUMBER_PATTERNS.get(tag, rx)) for tag, rx in resolvers]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
# libyaml's parser when PyYAML was built with it; the constructor and resolver are Python's.
_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class StoredLoader(_Base):
    """The safe loader with the campaign files' resolvers (the same plain data as the
    loader's, which differs only in how it reports a bad file)."""


StoredLoader.yaml_implicit_resolvers = IMPLICIT_RESOLVERS


@functools.lru_cache(maxsize=128)
def stored_definition(source: str, label: str) -> CampaignDefinition:
    """The definition a run stored, parsed once per process (stored text never changes and the
    result is frozen). ``label`` names it in an error (e.g. "run 3: winback.yaml")."""
    from pydantic import ValidationError

    from engine.definitions.schema import CampaignDefinition

    try:
        return CampaignDefinition.model_validate(yaml.load(source, Loader=StoredLoader))
    except (yaml.YAMLError, ValidationError, RecursionError):
        pass
    from engine.definitions.loader import parse_stored_definition

    # Raises the loader's file:line errors (it validates the same text the same way).
    return parse_stored_definition(source, label).definition
