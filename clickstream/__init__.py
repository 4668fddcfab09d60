"""Clickstream analytics pipeline: the shared core (settings, errors,
logging, time, the domain model), imported by every layer and importing none of them."""

__version__ = "0.1.0"
