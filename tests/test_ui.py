"""The connection page's files as the shim serves them (the page itself runs in a browser:
tests/test_ui_browser.py)."""

from __future__ import annotations

import re
from importlib import resources

import requests

from api_shim.routes.ui import ASSETS, UI_PATH


def test_the_page_and_its_files_are_served_with_a_policy_of_self_only(shim_url):
    for name, (_, media_type) in ASSETS.items():
        answer = requests.get(f"{shim_url}{UI_PATH}{name}", timeout=10)
        assert answer.status_code == 200, name
        assert answer.headers["content-type"] == media_type
        csp = answer.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert answer.headers["x-content-type-options"] == "nosniff"
    page = requests.get(f"{shim_url}{UI_PATH}", timeout=10).text
    assert '<script src="app.js"' in page and 'href="app.css"' in page


def test_nothing_but_the_pages_own_files_is_read(shim_url):
    for name in ("../app.py", "..%2Fapp.py", "index.htm", "app.js.map", "ui.py"):
        answer = requests.get(f"{shim_url}{UI_PATH}{name}", timeout=10)
        assert answer.status_code == 404, name
        assert answer.json() == {"success": False, "errno": 404, "message": "Not found."}
    # Paths are matched exactly (as every route's): without its slash, the envelope's 404.
    bare = requests.get(f"{shim_url}{UI_PATH.rstrip('/')}", allow_redirects=False, timeout=10)
    assert bare.status_code == 404 and bare.json()["errno"] == 404


def test_the_page_loads_nothing_from_the_internet_and_runs_no_inline_code():
    files = {
        n: resources.files("api_shim").joinpath("ui", n).read_text() for n, _ in ASSETS.values()
    }
    for name, text in files.items():
        urls = set(re.findall(r"https?://[^\s\"')]+", text)) - {"http://www.w3.org/2000/svg"}
        assert not urls, (name, urls)
    html = files["index.html"]
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script"
    assert "<style" not in html and " style=" not in html and " on" + "click=" not in html
