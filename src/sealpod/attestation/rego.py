"""Rego policies run by regopy (rego-cpp), with trustee's ``query_reference_value`` built on the reference values."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from sealpod.errors import AttestationError

_REFERENCE_MODULE = "package policy\nimport rego.v1\nquery_reference_value(name) := data.reference[name]\n"


def packaged(name: str) -> str:
    """A policy shipped with sealpod (``default_sgx.rego``, ``default_resource.rego``)."""
    return (resources.files("sealpod.attestation") / "policies" / name).read_text()


def evaluate(
    policy: str,
    rule: str,
    input_data: Any,
    data: dict[str, Any] | None = None,
    references: dict[str, list[Any]] | None = None,
) -> Any:
    """The value of ``rule`` (e.g. ``allow``) of package ``policy`` with this input; undefined is None.

    The whole package is queried and the rule picked from it: regopy answers ``undefined`` when a rule is queried
    directly and only its ``default`` applies.
    """
    from regopy import Interpreter

    interpreter = Interpreter()
    try:
        interpreter.add_module("policy.rego", policy)
        if references is not None:
            interpreter.add_module("reference.rego", _REFERENCE_MODULE)
        payload = dict(data or {})
        if references is not None:
            payload["reference"] = references
        interpreter.add_data_json(json.dumps(payload))
        interpreter.set_input_term(json.dumps(input_data))
        output = interpreter.query("data.policy")
    except Exception as err:  # regopy raises its own error types for syntax and evaluation errors
        raise AttestationError(f"policy evaluation failed: {err}") from None
    if not output.ok():
        raise AttestationError(f"policy evaluation failed: {output}")
    text = str(output)
    if text == "undefined":
        return None
    result = json.loads(text)
    for item in result if isinstance(result, list) else [result]:
        expressions = item.get("expressions") if isinstance(item, dict) else None
        if expressions and isinstance(expressions[0], dict):
            return expressions[0].get(rule)
    return None
