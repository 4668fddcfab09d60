"""The HBase master dataset's layout, defined once: row-key codec, families and qualifiers.

Imported by ingest (writes), storage (admin, scans) and the Spark job (range scans).
"""

from hbase_schema.columns import CLICK_DATA, FAMILIES, GEO_DATA, USER_AGENT_DATA
from hbase_schema.rowkey import RowKey, decode_row_key, encode_row_key, salt_of, scan_ranges

__all__ = [
    "CLICK_DATA",
    "FAMILIES",
    "GEO_DATA",
    "USER_AGENT_DATA",
    "RowKey",
    "decode_row_key",
    "encode_row_key",
    "salt_of",
    "scan_ranges",
]
