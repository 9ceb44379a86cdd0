"""Ingest side: embeds photos and writes them to the vector store. May import `locator`, never `training`."""
