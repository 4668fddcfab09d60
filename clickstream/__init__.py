"""Clickstream analytics pipeline: shared core (settings, errors, logging, CLI, local stack)."""

__version__ = "0.1.0"
