"""Ingestion: Kafka topics in, validated events and weak-label votes out to the store.

Never imports torch or the ML stack (enforced by import-linter), so ingestion workers stay small.
"""
