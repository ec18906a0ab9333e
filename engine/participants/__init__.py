"""Participants: import (CSV/JSONL) with validation, activity events, consent, suppression.

Modules: ``reader`` (streaming input), ``validation`` (pure row rules), ``importer`` and
``events`` (the two imports), ``store`` (their SQL), ``suppressions``, ``queries`` (show/list).
Nothing is imported here so that validation workers stay light.
"""
