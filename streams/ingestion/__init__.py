"""Ingestion: raw Kafka records -> validated events, their running votes and stored rows.

``batch`` decodes and validates a fetch and writes it (dead letters for what is malformed),
``votes`` is the cheap per-event vote ingestion keeps, ``worker`` is the long-running aiokafka
process around them.
"""
