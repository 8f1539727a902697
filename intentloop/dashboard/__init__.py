"""`intentloop dashboard`: one self-contained web page of label drift and operational health.

Works with no internet access: HTML from a Jinja2 template (``page``) with inline CSS and SVG
charts drawn on the server by pygal (``charts``), no script and nothing fetched from elsewhere; the
page reloads itself every ``refresh_s`` seconds. The same data is JSON at ``/api/overview`` and
Prometheus text at ``/metrics``, served by FastAPI under uvicorn (``app``), the web stack the
inference workers use. All of it renders one dict, ``streams.drift.overview.build_overview``.

The review page (``review``, ``/review``: reviewers label the active-learning queue) is the one page
with a script, its own ``review.js`` served by the app (CSP ``script-src 'self'``), behind a
reviewer token and CSRF-checked forms (``review_auth``).
"""

from intentloop.dashboard.app import DashboardServer, create_app
from intentloop.dashboard.page import render_page

__all__ = ["DashboardServer", "create_app", "render_page"]
