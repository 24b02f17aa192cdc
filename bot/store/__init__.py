"""Durable state: the journal-backed store, its TinyDB snapshot, the data directory lock."""
