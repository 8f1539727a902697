"""Kafka topic names: their single home."""

QUERIES = "search.queries"
FEEDBACK = "search.feedback"
DEAD_LETTER = "search.deadletter"
PREDICTIONS = "intent.predictions"
ALERTS = "ops.alerts"

INPUT_TOPICS = (QUERIES, FEEDBACK)
ALL_TOPICS = (QUERIES, FEEDBACK, DEAD_LETTER, PREDICTIONS, ALERTS)
