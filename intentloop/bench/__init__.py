"""Benchmarks: they print numbers (a JSON object on the last line), they never assert; tests do that.

``intentloop bench ingest`` (:mod:`intentloop.bench.ingest`) measures the ingest worker end to end
on real servers, next to a raw consume + COPY baseline of the same events on the same machine.
"""
