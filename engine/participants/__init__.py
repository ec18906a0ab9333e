"""Participants: import (CSV/JSONL) with validation, activity events, consent columns.

Modules: ``reader`` (streaming input), ``validation`` (pure row rules), ``importer`` and
``events`` (the two imports), ``store`` (their SQL), ``queries`` (show/list), ``erasure``.
Suppression lists live in ``engine.consent.suppressions``.
Nothing is imported here so that validation workers stay light.
"""
