"""Label drift monitoring (issue #6): statistics, the windowed check job, the dashboard's data.

``stats`` is pure (distances and the alert decision); ``job`` reads windows from the store,
compares, stores reports and raises alerts; ``overview`` and ``metrics`` feed the dashboard and
Prometheus. Nothing here imports torch: it runs beside ingestion.
"""
