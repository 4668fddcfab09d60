"""What a refused bulk item means: already done, worth retrying, this document's own fault, or an
index that refuses every document alike. Pure.

* written (2xx) or already as new (409 ``version_conflict_engine_exception``, external
  versions): nothing to do (``classify_bulk_item`` returns None);
* RETRIABLE: 408, 429, 5xx, and the types of an overloaded, blocked or recovering cluster
  (``RETRIABLE_TYPES``, e.g. ``cluster_block_exception`` at the flood-stage disk watermark);
* CONFIGURATION: 401, 403 and the types of an index that refuses every document alike
  (``CONFIGURATION_TYPES``, e.g. ``strict_dynamic_mapping_exception``);
* DOCUMENT: any other 4xx (e.g. ``illegal_argument_exception``). A document that does not parse
  (``PARSING_TYPES``) is the document's fault only if the index maps the written fields as the
  pipeline does: ``mapping_mismatches`` tells, from the index's mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from clickstream.errors import Failure

RETRIABLE_TYPES: Final = frozenset(
    {
        "cluster_block_exception",
        "es_rejected_execution_exception",
        "circuit_breaking_exception",
        "unavailable_shards_exception",
        "no_shard_available_action_exception",
    }
)
CONFIGURATION_TYPES: Final = frozenset(
    {
        "strict_dynamic_mapping_exception",
        "index_not_found_exception",
        "invalid_index_name_exception",
        "security_exception",
    }
)
#: A document that does not parse under the index's mapping: whose fault it is depends on the
#: mapping (see ``mapping_mismatches``).
PARSING_TYPES: Final = frozenset({"document_parsing_exception", "mapper_parsing_exception"})


def error_type(result: Mapping[str, Any]) -> str:
    """The ``error.type`` of a bulk item's result ("" when absent)."""
    error = result.get("error")
    return str(error.get("type", "")) if isinstance(error, Mapping) else ""


def classify_bulk_item(result: Mapping[str, Any]) -> Failure | None:
    """None when the item was written or already was (409 under external versions); else how
    to handle its failure. A parsing failure is DOCUMENT here: the caller checks the mapping."""
    status = int(result.get("status", 500))
    if status < 300 or status == 409:
        return None
    kind = error_type(result)
    if status in (408, 429) or status >= 500 or kind in RETRIABLE_TYPES:
        return Failure.RETRIABLE
    if status in (401, 403) or kind in CONFIGURATION_TYPES:
        return Failure.CONFIGURATION
    if 400 <= status < 500:
        return Failure.DOCUMENT
    return Failure.RETRIABLE


def mapping_mismatches(expected: Mapping[str, Any], mapping: Mapping[str, Any]) -> list[str]:
    """Each field of ``expected`` (name -> ``{"type": ...}``) that the index ``mapping`` (its
    ``mappings`` object) lacks or maps with another type, as ``field: got (expected want)``."""
    properties = mapping.get("properties", {})
    found = []
    for name, want in expected.items():
        got = properties.get(name, {}).get("type", "absent")
        if got != want.get("type"):
            found.append(f"{name}: {got} (expected {want.get('type')})")
    return found
