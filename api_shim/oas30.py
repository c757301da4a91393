"""An OpenAPI 3.1 document, as FastAPI and pydantic write it, rewritten as OpenAPI 3.0.3.

The Swagger UI served at /docs (4.x, from swagger-ui-bundle) refuses a 3.1 document. The two
differ here only in their schemas (3.1 uses JSON Schema 2020-12; 3.0 an older subset), and
only in what pydantic writes: `anyOf [X, {"type": "null"}]` becomes `nullable`, `const` a
one-value `enum`, and a schema's `examples` list a single `example`.
"""

from __future__ import annotations

from typing import Any

NULL = {"type": "null"}
NULL_30 = {"type": "object", "nullable": True, "enum": [None]}
"""A schema that only null fits, in OpenAPI 3.0.3."""
SCHEMA_LISTS = ("anyOf", "allOf", "oneOf")
"""Keywords whose value is a list of schemas (`properties` maps names to schemas)."""
SCHEMA_VALUES = ("items", "additionalProperties", "not")


def document_30(document: dict[str, Any]) -> dict[str, Any]:
    """The document, rewritten in place as OpenAPI 3.0.3: its version and every schema in it."""
    document["openapi"] = "3.0.3"
    schemas = document.get("components", {}).get("schemas", {})
    for name, schema in schemas.items():
        schemas[name] = schema_30(schema)
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                parameter["schema"] = schema_30(parameter["schema"])
            bodies = [operation.get("requestBody", {})] + list(operation["responses"].values())
            for body in bodies:
                for media in body.get("content", {}).values():
                    media["schema"] = schema_30(media.get("schema", {}))
    return document


def schema_30(schema: Any) -> Any:
    """A JSON Schema (2020-12, as pydantic writes it) as an OpenAPI 3.0 schema object."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: schema_30(s) for name, s in value.items()}
        elif key in SCHEMA_LISTS:
            out[key] = [schema_30(s) for s in value]
        elif key in SCHEMA_VALUES:
            out[key] = schema_30(value)
        else:
            out[key] = value
    if NULL in out.get("anyOf", []):
        out = nullable_30(out)
    if "const" in out:
        out["enum"] = [out.pop("const")]
    if isinstance(out.get("examples"), list):
        examples = out.pop("examples")
        if examples:
            out["example"] = examples[0]
    return out


def nullable_30(schema: dict[str, Any]) -> dict[str, Any]:
    """`anyOf [X, null]` in OpenAPI 3.0.3's terms. `nullable` counts only beside a `type` in
    the same schema, so X gets it where X has a type; otherwise (X is a $ref) the null
    alternative stays, spelled as 3.0.3 can."""
    rest = [s for s in schema["anyOf"] if s != NULL]
    others = {k: v for k, v in schema.items() if k != "anyOf"}
    if len(rest) == 1 and "type" in rest[0]:
        return {**rest[0], **others, "nullable": True}
    return {**others, "anyOf": [*rest, NULL_30]}


def without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """`anyOf [X, null]` as X: for a value that can be missing but never null (a query
    parameter)."""
    variants = schema.get("anyOf", [])
    rest = [s for s in variants if s != NULL]
    if NULL not in variants or len(rest) != 1:
        return schema
    return {**rest[0], **{k: v for k, v in schema.items() if k != "anyOf"}}
