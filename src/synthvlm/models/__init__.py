"""Model builders and loaders: tiny locally built models for tests and the offline demo."""
