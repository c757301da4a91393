"""The connection page: static HTML, CSS and JS written for it (no build step, nothing from
the internet), served at /v1/e/callrail/ui/ with a policy that lets it load only from here.

The page signs in with the dashboard's JWT, which it takes from the URL's fragment (never
sent to a server, so never in a log) and keeps in sessionStorage; every call it makes is one
of the API's own routes (see docs/ui.md).
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

from api_shim.answers import PREFIX
from api_shim.envelope import failure

UI_PATH = f"{PREFIX}/ui/"
ASSETS = {
    "": ("index.html", "text/html; charset=utf-8"),
    "app.css": ("app.css", "text/css; charset=utf-8"),
    "app.js": ("app.js", "text/javascript; charset=utf-8"),
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
router = APIRouter(include_in_schema=False)


def ui_link(base: str, token: str) -> str:
    """The connection page, signed in: the token rides in the fragment, which a browser never
    sends to a server (so no access log has it); the page moves it to sessionStorage."""
    return f"{base}{UI_PATH}#token={token}"


@router.get(UI_PATH + "{name}")
@router.get(UI_PATH)
async def ui_file(name: str = "") -> Response:
    """One of the page's own files (a fixed list: nothing else is read from disk)."""
    found = ASSETS.get(name)
    if found is None:
        answer = failure(404, "Not found.")
        answer.headers.update(HEADERS)
        return answer
    filename, media_type = found
    body = resources.files("api_shim").joinpath("ui", filename).read_bytes()
    return Response(body, media_type=media_type, headers=HEADERS)
