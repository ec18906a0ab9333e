"""Durations as coordinators write them in campaign files: '90d', '36h', '2w', '30m'.

The parsing is engine/definitions/duration_text.py (plain functions, what the settings use);
this module makes it a pydantic type for the definition models.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

from engine.definitions.duration_text import format_duration, parse_duration

__all__ = ["Duration", "format_duration", "parse_duration"]

Duration = Annotated[
    timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]
