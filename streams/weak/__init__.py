"""Weak intent labels from search behaviour: labeling functions, position-bias correction, aggregation.

Pure domain logic (no I/O): ingestion and the ``intentloop labels`` commands are thin shells around it.
Data flows ``records`` -> ``functions`` (votes, IPS-weighted with a ``propensity``) -> ``aggregate``
(per-query label distributions) -> optionally ``label_model``; ``analysis`` reports on the functions.
"""
