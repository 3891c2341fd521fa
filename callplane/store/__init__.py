"""Azure Table Storage as the system of record: call records, transcripts, indexes, rollups.

See docs/storage.md for the schema and why each key is what it is.
"""
