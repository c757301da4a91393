"""The OpenAPI document at /openapi.json.

It is OpenAPI 3.0.3, the version the bundled Swagger UI (4.x) renders; `oas30` rewrites the
JSON Schema that pydantic writes into that dialect.
"""

from __future__ import annotations

import functools
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from api_shim.oas30 import document_30

OPENAPI_URL = "/openapi.json"


def install(app: FastAPI) -> None:
    """Serve the app's document at /openapi.json, built at the first request (when every
    route is in). Create the app with `openapi_url=None`, so that FastAPI serves none."""

    @functools.cache
    def built() -> dict[str, Any]:
        return build(app)

    async def openapi_json() -> JSONResponse:
        return JSONResponse(built())

    app.add_api_route(OPENAPI_URL, openapi_json, methods=["GET"], include_in_schema=False)


def build(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of the app's routes that are in the schema."""
    inferred = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    return document_30(inferred)
