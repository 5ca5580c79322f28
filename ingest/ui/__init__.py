"""The spend dashboard: a read-only web UI the gateway serves under ``/ui``.

See docs/dashboard.md for the pages and the access rules. The gateway imports
this package only when the first ``/ui`` request arrives, so FastAPI and the
templates cost the proxy nothing until someone opens the dashboard.
"""

from .app import create_ui_app

__all__ = ["create_ui_app"]
