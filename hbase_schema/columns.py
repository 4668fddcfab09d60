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


# click_data: the event itself.
USER_ID: Final = column(CLICK_DATA, "user_id")
EVENT_ID: Final = column(CLICK_DATA, "event_id")
TIMESTAMP_MS: Final = column(CLICK_DATA, "ts")
URL: Final = column(CLICK_DATA, "url")
# geo_data: the geolocation enrichment.
COUNTRY: Final = column(GEO_DATA, "country")
# user_agent_data: the user-agent enrichment.
USER_AGENT: Final = column(USER_AGENT_DATA, "ua")
