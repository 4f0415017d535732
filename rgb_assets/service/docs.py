"""``/docs``: Swagger UI served by the app itself, from the files the ``fastapi-offline``
package ships (Swagger UI 5, which reads FastAPI's OpenAPI 3.1).

FastAPI's default page loads Swagger UI from a CDN, which is a blank page offline.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

SWAGGER_DIR = Path(fastapi_offline.__file__).parent / "static"
SWAGGER_FILES = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"})


def install_offline_docs(app: FastAPI) -> None:
    """Add ``/docs`` and its assets under ``/docs/static/`` (create the app with docs_url=None)."""

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - Swagger UI",
            swagger_js_url="/docs/static/swagger-ui-bundle.js",
            swagger_css_url="/docs/static/swagger-ui.css",
            swagger_favicon_url="/docs/static/favicon.png",
        )

    @app.get("/docs/static/{name}", include_in_schema=False)
    def docs_static(name: str) -> FileResponse:
        if name not in SWAGGER_FILES:
            raise HTTPException(404, f"{name} not found")
        return FileResponse(SWAGGER_DIR / name)
