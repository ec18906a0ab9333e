"""Outbound communication-campaign engine for loyalty and membership programs."""

__version__ = "0.1.0"
