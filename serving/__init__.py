"""Inference workers: load the promoted adapter, answer over HTTP, hot-swap on promotion."""
