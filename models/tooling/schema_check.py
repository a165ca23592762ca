"""A small JSON Schema (draft 2020-12) validator covering the keywords that
models/armor-bundle.schema.json uses, so the build can refuse to write a manifest the
runtime (ajv) would refuse. Unknown keywords fail loudly rather than being ignored."""
from __future__ import annotations

import re
from typing import Any, Dict, List

_KNOWN = {"$schema", "$id", "title", "description", "$defs", "type", "required", "properties",
          "const", "pattern", "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum",
          "exclusiveMaximum", "items", "minItems", "maxItems", "$ref", "allOf",
          "additionalProperties", "propertyNames", "enum"}


def _type_ok(v: Any, t: str) -> bool:
    if t == "object":
        return isinstance(v, dict)
    if t == "array":
        return isinstance(v, list)
    if t == "string":
        return isinstance(v, str)
    if t == "integer":
        return isinstance(v, int) and not isinstance(v, bool) or (isinstance(v, float) and v.is_integer())
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if t == "boolean":
        return isinstance(v, bool)
    if t == "null":
        return v is None
    raise ValueError(f"unsupported type {t}")


def validate(doc: Any, schema: Dict, root: Dict = None, path: str = "") -> List[str]:
    if schema is True:
        return []
    if schema is False:
        return [f"{path}: not allowed"]
    root = root or schema
    errs: List[str] = []
    unknown = set(schema) - _KNOWN
    if unknown:
        raise ValueError(f"schema keyword(s) not supported: {sorted(unknown)}")
    if "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/"), ref
        target = root
        for part in ref[2:].split("/"):
            target = target[part]
        errs += validate(doc, target, root, path)
    for sub in schema.get("allOf", []):
        errs += validate(doc, sub, root, path)
    if "type" in schema and not _type_ok(doc, schema["type"]):
        return errs + [f"{path or '/'}: expected {schema['type']}"]
    if "const" in schema and doc != schema["const"]:
        errs.append(f"{path}: must be {schema['const']!r}")
    if "enum" in schema and doc not in schema["enum"]:
        errs.append(f"{path}: must be one of {schema['enum']!r}")
    if isinstance(doc, str):
        if "pattern" in schema and not re.search(schema["pattern"], doc):
            errs.append(f"{path}: does not match {schema['pattern']}")
        if len(doc) < schema.get("minLength", 0) or len(doc) > schema.get("maxLength", 1 << 60):
            errs.append(f"{path}: bad length")
    if isinstance(doc, (int, float)) and not isinstance(doc, bool):
        if "minimum" in schema and doc < schema["minimum"]:
            errs.append(f"{path}: < minimum")
        if "maximum" in schema and doc > schema["maximum"]:
            errs.append(f"{path}: > maximum")
        if "exclusiveMinimum" in schema and doc <= schema["exclusiveMinimum"]:
            errs.append(f"{path}: <= exclusiveMinimum")
        if "exclusiveMaximum" in schema and doc >= schema["exclusiveMaximum"]:
            errs.append(f"{path}: >= exclusiveMaximum")
    if isinstance(doc, list):
        if len(doc) < schema.get("minItems", 0) or len(doc) > schema.get("maxItems", 1 << 60):
            errs.append(f"{path}: bad item count {len(doc)}")
        if "items" in schema:
            for i, v in enumerate(doc):
                errs += validate(v, schema["items"], root, f"{path}/{i}")
    if isinstance(doc, dict):
        for k in schema.get("required", []):
            if k not in doc:
                errs.append(f"{path}: missing {k}")
        props = schema.get("properties", {})
        for k, v in doc.items():
            if k in props:
                errs += validate(v, props[k], root, f"{path}/{k}")
            elif "additionalProperties" in schema:
                errs += validate(v, schema["additionalProperties"], root, f"{path}/{k}")
            if "propertyNames" in schema:
                errs += validate(k, schema["propertyNames"], root, f"{path}/{k}(name)")
    return errs
