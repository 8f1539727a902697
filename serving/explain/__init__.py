"""Explanations: which words of a query pushed a version toward a label (``POST /v1/explain``,
``intentloop explain``), how faithful that is (``intentloop bench explain``), and the per-label view
over recent traffic the dashboard shows."""
