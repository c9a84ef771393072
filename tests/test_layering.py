"""The package's shape, read from its source: no import cycles, and no arrow that DESIGN.md forbids.

Every ``import`` and ``from ... import`` of sealpod in every module counts, at module level or inside a function
(a lazy import is still a dependency, and ``TYPE_CHECKING`` imports are dependencies of the types).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import sealpod

PACKAGE = Path(sealpod.__file__).parent

#: For each part (a package or module prefix), the parts it must never import. A part is the longest matching
#: prefix; ``sealpod.cli`` (the command line) may import everything.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    # the host side: nothing that handles keys or plaintext
    "sealpod.runtime": (
        "sealpod.enclave",
        "sealpod.agent",
        "sealpod.ocicrypt",
        "sealpod.kbs",
        "sealpod.tee",
        "sealpod.attestation",
        "sealpod.signature",
        "sealpod.cli",
    ),
    # the contract between host and enclave, and the shared helpers: the bottom of the stack
    "sealpod.boundary": ("sealpod.",),
    "sealpod._internal": ("sealpod.",),
    # the enclave conducts; the agent does the KBS's and the image's work
    "sealpod.enclave": (
        "sealpod.kbs",
        "sealpod.oci.source",
        "sealpod.oci.registry",
        "sealpod.oci.pull",
        "sealpod.ocicrypt",
        "sealpod.signature",
        "sealpod.runtime",
    ),
    "sealpod.agent": ("sealpod.enclave", "sealpod.runtime", "sealpod.kbs.service", "sealpod.kbs.serving"),
    # the KBS by role: clients below the service, the service below its serving machinery
    "sealpod.kbs.client": ("sealpod.kbs.service", "sealpod.kbs.serving", "sealpod.attestation", "sealpod.oci"),
    "sealpod.kbs.service": ("sealpod.kbs.serving", "sealpod.tee", "sealpod.oci"),
    "sealpod.kbs.serving": ("sealpod.tee", "sealpod.oci"),
    # formats: ocicrypt and signature see only oci's model, and reach keys and signatures through their callers
    "sealpod.ocicrypt": ("sealpod.kbs", "sealpod.agent", "sealpod.oci.source", "sealpod.oci.registry"),
    "sealpod.signature": ("sealpod.kbs", "sealpod.agent", "sealpod.oci.source", "sealpod.oci.layout"),
    # the evidence side gets the quote format and the sim platform's files, never the verifier
    "sealpod.tee": (
        "sealpod.attestation.sgx.verify",
        "sealpod.attestation.sgx.collateral",
        "sealpod.attestation.sgx.sim_pcs",
        "sealpod.attestation.service",
        "sealpod.kbs",
    ),
    "sealpod.attestation": ("sealpod.tee", "sealpod.kbs", "sealpod.enclave", "sealpod.agent", "sealpod.oci"),
    "sealpod.oci": (
        "sealpod.ocicrypt",
        "sealpod.signature",
        "sealpod.kbs",
        "sealpod.attestation",
        "sealpod.tee",
        "sealpod.agent",
        "sealpod.enclave",
        "sealpod.runtime",
    ),
}
#: What the sealpod package's own ``__init__`` and ``errors``/``config`` may be imported by anyone.
EVERYONE = ("sealpod", "sealpod.errors", "sealpod.config")


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["sealpod", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str:
    """The module ``name`` is or is in (``sealpod.kbs.client.KbsClient`` -> ``sealpod.kbs.client``)."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _imports(module: str) -> Iterator[str]:
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (_resolve(alias.name) for alias in node.names if alias.name.startswith("sealpod"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] != "sealpod":
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield full if full in MODULES else _resolve(base)


GRAPH = {module: sorted(set(_imports(module)) - {module}) for module in MODULES}


def _cycles() -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in GRAPH:
        if root in index:
            continue
        work = [(root, iter(GRAPH[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(GRAPH[target])))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def _part(module: str) -> str | None:
    matches = [part for part in FORBIDDEN if module == part or module.startswith(part + ".")]
    return max(matches, key=len) if matches else None


def _matches(target: str, forbidden: str) -> bool:
    if forbidden.endswith("."):
        return target.startswith(forbidden)
    return target == forbidden or target.startswith(forbidden + ".")


def _violations() -> list[str]:
    out = []
    for module, targets in GRAPH.items():
        part = _part(module)
        if part is None:
            continue
        for target in targets:
            if target in EVERYONE or _matches(target, part):
                continue
            refused = [f for f in FORBIDDEN[part] if _matches(target, f)]
            if refused:
                out.append(f"{module} imports {target} ({part} must not import {refused[0].rstrip('.')})")
    return out


def test_the_walk_sees_the_package() -> None:
    assert "sealpod.agent.run" in GRAPH["sealpod.enclave.boot"]
    assert "sealpod.boundary.request" in GRAPH["sealpod.runtime.launch"]


def test_no_import_cycles() -> None:
    assert _cycles() == []


def test_no_forbidden_arrows() -> None:
    assert _violations() == []


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("sealpod.runtime.launch", "sealpod.kbs.client"),
        ("sealpod.tee.sim", "sealpod.attestation.sgx.verify"),
        ("sealpod.enclave.boot", "sealpod.kbs.client.rcar"),
        ("sealpod.signature.verifier", "sealpod.oci.source"),
        ("sealpod.boundary.request", "sealpod.oci.models"),
    ],
)
def test_the_rules_catch_a_forbidden_arrow(importer: str, imported: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(GRAPH, importer, [*GRAPH[importer], imported])
    assert any(line.startswith(f"{importer} imports {imported}") for line in _violations())


def test_the_walk_catches_a_cycle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(GRAPH, "sealpod.oci.models", [*GRAPH["sealpod.oci.models"], "sealpod.oci.pull"])
    assert any("sealpod.oci.models" in cycle and "sealpod.oci.pull" in cycle for cycle in _cycles())
