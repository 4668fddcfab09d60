"""Ingest: the Kafka side of the pipeline (topics; later the consumer daemon)."""
