"""Ingest: read caption files of many formats into the caption pool, with stable ids and a reject table."""
