"""Column families and qualifiers of the master dataset table, as the bytes HBase stores."""

from typing import Final

CLICK_DATA: Final = "click_data"
GEO_DATA: Final = "geo_data"
USER_AGENT_DATA: Final = "user_agent_data"

#: Every family of the table, in the order they are created.
FAMILIES: Final = (CLICK_DATA, GEO_DATA, USER_AGENT_DATA)


def column(family: str, qualifier: str) -> bytes:
    """``family:qualifier`` as happybase expects it."""
    if family not in FAMILIES:
        raise ValueError(f"unknown column family {family!r}; expected one of {FAMILIES}")
    return f"{family}:{qualifier}".encode()


# Values are UTF-8 text (numbers in decimal), readable in the HBase shell and by any reader.
# click_data: the event itself, as validated.
EVENT_ID: Final = column(CLICK_DATA, "event_id")
EVENT_ID_GENERATED: Final = column(CLICK_DATA, "event_id_generated")
USER_ID: Final = column(CLICK_DATA, "user_id")
TIMESTAMP_MS: Final = column(CLICK_DATA, "ts")
URL: Final = column(CLICK_DATA, "url")
URL_NORMALIZED: Final = column(CLICK_DATA, "url_norm")
REFERRER: Final = column(CLICK_DATA, "referrer")
SESSION_ID: Final = column(CLICK_DATA, "session_id")
IP: Final = column(CLICK_DATA, "ip")
SOURCE: Final = column(CLICK_DATA, "source")
# geo_data: the geolocation enrichment (country ZZ when unknown).
COUNTRY: Final = column(GEO_DATA, "country")
CITY: Final = column(GEO_DATA, "city")
REGION: Final = column(GEO_DATA, "region")
LATITUDE: Final = column(GEO_DATA, "lat")
LONGITUDE: Final = column(GEO_DATA, "lon")
# user_agent_data: the user-agent enrichment.
USER_AGENT: Final = column(USER_AGENT_DATA, "ua")
BROWSER_FAMILY: Final = column(USER_AGENT_DATA, "browser")
BROWSER_MAJOR: Final = column(USER_AGENT_DATA, "browser_major")
OS_FAMILY: Final = column(USER_AGENT_DATA, "os")
DEVICE_FAMILY: Final = column(USER_AGENT_DATA, "device")
IS_BOT: Final = column(USER_AGENT_DATA, "is_bot")
BOT_RULE: Final = column(USER_AGENT_DATA, "bot_rule")
"""The rule that flagged a bot (``Agent.bot_rule``, e.g. ``crawler-user-agents``): written only
when ``is_bot`` is 1, and absent from rows written before it existed."""
