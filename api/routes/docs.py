"""`/docs` and `/redoc` without internet: Swagger UI and ReDoc served from the files of the installed
`fastapi-offline` package.

FastAPI's default docs page loads Swagger UI from a CDN, which leaves a blank page on an air-gapped machine.
The app is created with `docs_url=None, redoc_url=None` and includes this router instead.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse

router = APIRouter(include_in_schema=False)

ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
ASSETS = {"swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"}


def _asset(request: Request, name: str) -> str:
    """The URL of one of the served files, behind whatever root path the app is mounted at."""
    return f"{request.scope.get('root_path', '')}/docs/assets/{name}"


def _openapi_url(request: Request) -> str:
    return f"{request.scope.get('root_path', '')}{request.app.openapi_url}"


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI, every file from this server."""
    return get_swagger_ui_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} - API docs",
        oauth2_redirect_url=f"{request.scope.get('root_path', '')}/docs/oauth2-redirect",
        swagger_js_url=_asset(request, "swagger-ui-bundle.js"),
        swagger_css_url=_asset(request, "swagger-ui.css"),
        swagger_favicon_url=_asset(request, "favicon.png"),
        swagger_ui_parameters={"persistAuthorization": True},
    )


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    """ReDoc, every file from this server (no web fonts from elsewhere)."""
    return get_redoc_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} - API reference",
        redoc_js_url=_asset(request, "redoc.standalone.js"),
        redoc_favicon_url=_asset(request, "favicon.png"),
        with_google_fonts=False,
    )


@router.get("/docs/oauth2-redirect")
def swagger_ui_redirect() -> HTMLResponse:
    """Swagger UI's OAuth2 redirect page."""
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/docs/assets/{name}")
def swagger_asset(name: str) -> FileResponse:
    """One of Swagger UI's files, from a fixed list (no path comes from the request)."""
    if name not in ASSETS:
        raise HTTPException(status_code=404, detail="Not Found")
    return FileResponse(ASSETS_DIR / name, headers={"Cache-Control": "public, max-age=86400"})
