"""``sealpod-runtime``'s entry point: hand runc's calls to runc before loading anything of the enclave side.

containerd calls the runtime for every container of a pod, the pause sandbox's too, several times each (create,
start, state, kill, delete). Most of those calls are runc's: the sandbox, ordinary images, containers with no
sealpod record. Deciding that needs a flag, a file's existence and, for ``create``, the bundle's annotations and
rootfs; the full runtime (:mod:`sealpod.runtime.oci_runtime`) imports ~35 ms of modules first, runc answers in
~4 ms. So this module decides with built-in modules only and execs runc; whatever it cannot rule out (a sealpod
marker, a record, anything unreadable) goes to the full runtime, which decides again and reports errors.
"""

from __future__ import annotations

import os
import sys

from sealpod.boundary import jsontext
from sealpod.runtime.oci_invocation import ANSWERED, REFUSED, Invocation
from sealpod.runtime.oci_names import CONTAINER_TYPE, DEFAULT_CONFIG, MARKER_PATH, MAX_CONFIG, RECORD, default_runc


def main() -> None:
    """The ``sealpod-runtime`` command."""
    argv = sys.argv[1:]
    invocation = Invocation.parse(argv)
    if belongs_to_runc(invocation):
        runc = configured_runc()
        if runc is not None:
            try:  # noqa: SIM105 - contextlib is ~2 ms of imports here
                os.execv(runc, [runc, *argv])  # noqa: S606 - runc, with the arguments containerd gave
            except OSError:
                pass  # the full runtime tries again and reports it where containerd looks (--log)
    from sealpod.runtime.oci_runtime import main as full_main

    full_main()


def belongs_to_runc(invocation: Invocation) -> bool:
    """Whether the call is certainly runc's (the full runtime would exec runc for it too); False when in doubt."""
    if invocation.command == "create":
        return _is_ordinary_bundle(invocation.bundle_name)
    if invocation.command not in ANSWERED | REFUSED or not invocation.args:
        return True
    container_id = invocation.args[0]
    if not container_id or "/" in container_id or container_id in {".", ".."}:
        return False  # the full runtime names what is wrong
    return not os.path.lexists(os.path.join(invocation.root_name, container_id, RECORD))


def _is_ordinary_bundle(bundle: str) -> bool:
    """A pod's sandbox, or a rootfs without the sealpod marker; False for a sealpod image's or an unreadable one."""
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as handle:
            config = jsontext.loads(handle.read(MAX_CONFIG + 1))
    except (OSError, ValueError):
        return False
    if not isinstance(config, dict):
        return False
    annotations = config.get("annotations") or {}
    if isinstance(annotations, dict) and annotations.get(CONTAINER_TYPE) == "sandbox":
        return True
    root = config.get("root") or {}
    path = root.get("path", "rootfs") if isinstance(root, dict) else "rootfs"
    if not isinstance(path, str):
        return False
    return not os.path.lexists(os.path.join(bundle, path, MARKER_PATH))


def configured_runc() -> str | None:
    """The runc the node config names (else the one on PATH); None when the config cannot be read here (the full
    runtime reads it and says what is wrong)."""
    path = os.environ.get("SEALPOD_RUNTIME_CONFIG") or DEFAULT_CONFIG
    try:
        with open(path, "rb") as handle:
            text = handle.read(MAX_CONFIG + 1)
    except FileNotFoundError:
        text = b""
    except OSError:
        return None
    runc: object = None
    if b"runc" in text:  # only then is the TOML parser (~5 ms with re) worth loading
        import tomllib

        try:
            runc = tomllib.loads(text.decode()).get("runc")
        except (UnicodeDecodeError, tomllib.TOMLDecodeError):
            return None
    if runc is not None and not isinstance(runc, str):
        return None
    return runc or default_runc()
