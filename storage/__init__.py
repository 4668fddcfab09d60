"""Storage: the HBase master dataset (connections, table admin, reads and writes)."""
