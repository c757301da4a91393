"""The OpenAPI document tells the truth about the shim, and /docs shows it without the internet."""

from __future__ import annotations

import re

import pytest
import requests
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate as validate_spec

from api_shim.oas30 import NULL_30, schema_30


@pytest.fixture
def spec(shim_url) -> dict:
    response = requests.get(f"{shim_url}/openapi.json", timeout=10)
    assert response.status_code == 200
    return response.json()


def test_the_document_is_valid_openapi_3_0_which_the_bundled_swagger_ui_renders(spec):
    assert spec["openapi"] == "3.0.3"
    validate_spec(spec)


# --- the 3.0 dialect ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "rewritten"),
    [
        (
            {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "T"},
            {"type": "string", "title": "T", "nullable": True},
        ),
        (
            {"anyOf": [{"$ref": "#/components/schemas/E"}, {"type": "null"}], "description": "d"},
            {"description": "d", "anyOf": [{"$ref": "#/components/schemas/E"}, NULL_30]},
        ),
        ({"type": "boolean", "const": True}, {"type": "boolean", "enum": [True]}),
        ({"type": "string", "examples": ["a", "b"]}, {"type": "string", "example": "a"}),
        (
            {
                "type": "object",
                "properties": {"const": {"const": 1}, "examples": {"type": "array"}},
            },
            {
                "type": "object",
                "properties": {"const": {"enum": [1]}, "examples": {"type": "array"}},
            },
        ),
        (
            {"type": "array", "items": {"anyOf": [{"type": "integer"}, {"type": "null"}]}},
            {"type": "array", "items": {"type": "integer", "nullable": True}},
        ),
    ],
    ids=["nullable type", "nullable reference", "const", "examples", "property names", "items"],
)
def test_json_schema_is_rewritten_in_openapi_3_0_terms(written, rewritten):
    assert schema_30(written) == rewritten


def test_a_nullable_reference_takes_null_and_the_referenced_shape_only():
    components = {"schemas": {"E": {"type": "object", "required": ["x"]}}}
    schema = schema_30({"anyOf": [{"$ref": "#/components/schemas/E"}, {"type": "null"}]})
    validator = OAS30Validator({**schema, "components": components})
    assert validator.is_valid(None) and validator.is_valid({"x": 1})
    assert not validator.is_valid({}) and not validator.is_valid("text")


# --- /docs without the internet ---------------------------------------------------------------


def test_docs_load_every_asset_from_the_shim_itself(shim_url):
    page = requests.get(f"{shim_url}/docs", timeout=10)
    assert page.status_code == 200 and "swagger-ui" in page.text
    assert "http://" not in page.text and "https://" not in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert {a.rsplit("/", 1)[-1] for a in assets} >= {"swagger-ui-bundle.js", "swagger-ui.css"}
    for asset in assets:
        fetched = requests.get(shim_url + asset, timeout=10)
        assert fetched.status_code == 200 and fetched.content, asset
    assert "url: '/openapi.json'" in page.text


def test_redoc_is_not_offered(shim_url):
    response = requests.get(f"{shim_url}/redoc", timeout=10)
    assert response.status_code == 404
