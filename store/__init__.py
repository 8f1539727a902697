"""Persistence layer: Postgres (events, labels, versions), Redis (live registry), artifact files.

The bottom layer: it imports nothing from ``streams``, ``trainer``, ``serving`` or ``intentloop``.
"""
