"""The serving layer: answers over any time range, merging the batch and speed views.

Pure parts (``params``: validated queries; ``merge``: sums, sketch unions, exactness;
``render``: table, JSON, CSV) sit between two edges: ``search`` (Elasticsearch and the HBase late
ledger) and the entry points (``clickstream query``, and ``api``: ``clickstream serve``).
"""
