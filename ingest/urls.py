"""URL normalisation: one spelling per page, so clicks group by URL.

The rules (documented in the README, shared by speed and batch layers through this function):
lower-case scheme and host; userinfo dropped (credentials are never stored); default port (80
for http, 443 for https) dropped; empty path becomes ``/``; path kept as sent (case, trailing
slash, percent-encoding); fragment dropped; query dropped except allow-listed parameters, which
are kept with their original spelling, in sorted order of name.
"""

from __future__ import annotations

from urllib.parse import unquote_plus, urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_url(url: str, query_allowlist: frozenset[str] = frozenset()) -> str:
    """The normalised form of an absolute http(s) ``url``.

    Query parameter names are compared with ``query_allowlist`` after percent-decoding, case
    sensitively (``utm_source`` is not ``UTM_SOURCE``). Raises ValueError when ``url`` has no
    host or a malformed port: the validator rejects such URLs before enrichment.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname  # lower-cased, userinfo and IPv6 brackets removed
    if not host:
        raise ValueError(f"not an absolute URL with a host: {url!r}")
    if ":" in host:
        host = f"[{host}]"
    port = parts.port  # ValueError when out of range or not a number
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    query = _allowed_query(parts.query, query_allowlist) if query_allowlist else ""
    normalized = f"{scheme}://{netloc}{parts.path or '/'}"
    return f"{normalized}?{query}" if query else normalized


def _allowed_query(query: str, allowlist: frozenset[str]) -> str:
    # Keep each name=value piece as sent (no re-encoding), so values stay byte-identical; a
    # stable sort by name keeps repeated parameters (tag=a&tag=b) in their original order.
    kept = []
    for piece in query.split("&"):
        name = unquote_plus(piece.partition("=")[0])
        if piece and name in allowlist:
            kept.append((name, piece))
    kept.sort(key=lambda item: item[0])
    return "&".join(piece for _, piece in kept)
