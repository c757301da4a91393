"""Swagger UI at /docs, with its files served by the shim itself: the docs work offline.

FastAPI's own /docs page loads Swagger UI from a CDN, so it is blank wherever the browser
cannot reach the internet. Here the files come from the swagger-ui-bundle package, mounted
under /docs/assets; ReDoc (CDN-only as well) is not offered.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

DOCS_URL = "/docs"
ASSETS_URL = "/docs/assets"


def install(app: FastAPI, openapi_url: str) -> None:
    """Serve Swagger UI for the document at `openapi_url` (create the app with
    `docs_url=None` and `redoc_url=None`, so that FastAPI serves neither)."""
    app.mount(ASSETS_URL, StaticFiles(directory=swagger_ui_path), name="swagger-ui")

    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
        )

    app.add_api_route(DOCS_URL, swagger_ui, methods=["GET"], include_in_schema=False)
