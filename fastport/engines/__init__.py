"""Storage behind the broker: in memory by default (the broker's own objects), or the embedded
SQLite store (``--store sqlite:PATH``) that makes sessions, durable clients, held messages,
retained messages and the dedupe window survive a restart."""
