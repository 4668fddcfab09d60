"""The ingest domain: a validated click, its enrichment, and the typed rejection of bad input.

Frozen, slotted dataclasses move between stages; no dicts. Failures are data (``Rejection``),
routed to the dead-letter topic, never exceptions that escape the consumer loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class Reason(StrEnum):
    """Why a message was rejected: the ``reason`` header of its dead-letter record.

    In the spirit of Snowplow's failed-event types: one stable code per kind of failure, a
    readable detail beside it. The README documents each.
    """

    NOT_UTF8 = "not_utf8"
    """The message value is not valid UTF-8."""
    NOT_JSON = "not_json"
    """The value is not parseable JSON."""
    NOT_OBJECT = "not_object"
    """The JSON is valid but not an object."""
    TOO_LARGE = "too_large"
    """The value exceeds ``ingest.max_message_bytes``."""
    EMPTY = "empty"
    """The value is empty (a tombstone or a null payload)."""
    MISSING_FIELD = "missing_field"
    """A required field (user_id, timestamp, url; ip unless country) is absent or null."""
    BAD_TYPE = "bad_type"
    """A field has the wrong JSON type (e.g. a number where a string is required)."""
    FIELD_TOO_LONG = "field_too_long"
    """A string field exceeds its maximum length."""
    BAD_TIMESTAMP = "bad_timestamp"
    """The timestamp is neither ISO-8601 with a UTC offset nor integer epoch milliseconds."""
    TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"
    """The timestamp lies outside the accepted window around the time of ingest."""
    BAD_URL = "bad_url"
    """The url is not an absolute http(s) URL with a host."""
    BAD_IP = "bad_ip"
    """The ip is not an IPv4 or IPv6 address."""
    BAD_COUNTRY = "bad_country"
    """The country is not an ISO 3166-1 alpha-2 code."""
    ENRICHMENT_FAILED = "enrichment_failed"
    """A valid event that enrichment could not process (a bug: the detail names the error)."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message that cannot become a click, with the reason code and a readable detail."""

    reason: Reason
    detail: str
    field: str | None = None


@dataclass(frozen=True, slots=True)
class ClickEvent:
    """A valid page view, as the web application sent it (after validation, before enrichment).

    ``event_id`` is the sender's id or, when absent, a fingerprint of user, timestamp and URL
    (``event_id_generated`` says which): the deduplication key of the whole pipeline.
    """

    event_id: str
    user_id: str
    timestamp_ms: int
    url: str
    ip: str | None = None
    user_agent: str | None = None
    referrer: str | None = None
    session_id: str | None = None
    country: str | None = None
    city: str | None = None
    event_id_generated: bool = False


@dataclass(frozen=True, slots=True)
class Geo:
    """Where an IP is, as far as the geo database knows (country ``ZZ`` when unknown)."""

    country: str = "ZZ"
    city: str | None = None
    region: str | None = None
    latitude: float | None = None
    longitude: float | None = None


RULE_UAP_CORE: Final = "uap-core"
"""uap-core's device family is ``Spider``: a crawler uap-core names."""
RULE_CRAWLER_LIST: Final = "crawler-user-agents"
"""A pattern of the crawler-user-agents list (PyPI ``crawler-user-agents``, MIT) matches."""
RULE_TOOLS: Final = "tools"
"""A token of the project's short list of tools (``ingest.agent.AUTOMATION_TOKENS``) matches."""
BOT_RULES: Final = (RULE_UAP_CORE, RULE_CRAWLER_LIST, RULE_TOOLS)
"""Every bot rule, in the order ingest tries them (``ingest/agent.py``): the values of
``Agent.bot_rule``, and the rules the views count bot clicks by."""


@dataclass(frozen=True, slots=True)
class Agent:
    """What a user-agent string says about the browser, OS and device; bots flagged.

    ``bot_rule`` names the rule that flagged a bot (:data:`BOT_RULES`: ``uap-core``,
    ``crawler-user-agents``, ``tools``); ``None`` for a human, and for a bot read from a row
    written before the rule was stored.
    """

    browser_family: str = "Other"
    browser_major: str | None = None
    os_family: str = "Other"
    device_family: str = "Other"
    is_bot: bool = False
    bot_rule: str | None = None


@dataclass(frozen=True, slots=True)
class EnrichedClick:
    """A click ready for the master dataset: the event, its normalised URL, geo and agent."""

    event: ClickEvent
    url_normalized: str
    geo: Geo
    agent: Agent
    ip_anonymized: str | None


@dataclass(frozen=True, slots=True)
class Source:
    """Where a Kafka message came from: carried into dead-letter headers and logs."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None
