"""Rego policies run by regopy (rego-cpp), with trustee's ``query_reference_value`` built on the reference values."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from sealpod.errors import AttestationError

_REFERENCE_MODULE = "package policy\nimport rego.v1\nquery_reference_value(name) := data.reference[name]\n"


@functools.lru_cache(maxsize=8)
def packaged(name: str) -> str:
    """A policy shipped with sealpod (``default_sgx.rego``, ``default_resource.rego``)."""
    return (resources.files("sealpod.attestation") / "policies" / name).read_text()


@functools.lru_cache(maxsize=32)
def _interpreter(policy: str, data_json: str, with_references: bool) -> Any:
    """A compiled interpreter per (policy, data): building one costs milliseconds, a query on it much less."""
    from regopy import Interpreter

    interpreter = Interpreter()
    interpreter.add_module("policy.rego", policy)
    if with_references:
        interpreter.add_module("reference.rego", _REFERENCE_MODULE)
    interpreter.add_data_json(data_json)
    return interpreter


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
    payload = dict(data or {})
    if references is not None:
        payload["reference"] = references
    try:
        interpreter = _interpreter(policy, json.dumps(payload, sort_keys=True), references is not None)
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
