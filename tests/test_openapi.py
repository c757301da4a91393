"""The OpenAPI document tells the truth about the shim, and /docs shows it without the internet."""

from __future__ import annotations

import pytest
from openapi_schema_validator import OAS30Validator

from api_shim.oas30 import NULL_30, schema_30

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
