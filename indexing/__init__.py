"""Indexing: the Elasticsearch side (client, index templates for the batch and speed views)."""
