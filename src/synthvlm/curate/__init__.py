"""Caption curation: Data-Juicer-compatible rule-based filters, then exact dedup of normalised text."""
