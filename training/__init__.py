"""Training side: partitions, features, heads and retrieval training. May import `locator`, never `ingest`."""
