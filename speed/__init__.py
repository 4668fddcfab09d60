"""The speed layer: per-partition, replay-safe minute views folded inside the ingest daemon.

``state`` is the pure part (user timelines, minute documents, contributions); ``store`` writes
and restores the documents in Elasticsearch; ``changelog`` keeps the users' timelines in a
compacted Kafka topic; ``layer`` ties them to the consumer loop.
"""
