"""The enclave program's entry point: a request on the command line (:mod:`.boot`), or a pre-launched enclave
waiting for one (:mod:`.prelaunch`)."""

from __future__ import annotations

import os
import sys

from sealpod.boundary.request import BootRequest
from sealpod.enclave.boot import boot_reporting, terminate_on_sigterm
from sealpod.errors import SealpodError


def main(argv: list[str] | None = None) -> None:
    """``python -m sealpod.enclave REQUEST_JSON``: boot and exit with the workload's status.

    ``python -m sealpod.enclave --zygote FD``: fork pre-launched enclaves on the pool's demand (:mod:`.prelaunch`)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "--zygote" and args[1].isdigit():
        from sealpod.enclave.prelaunch import zygote

        os._exit(zygote(int(args[1])))
    if len(args) != 1:
        print("usage: python -m sealpod.enclave REQUEST_JSON | --zygote FD", file=sys.stderr)
        sys.exit(2)
    terminate_on_sigterm()
    try:
        request = BootRequest.from_json(args[0])
    except SealpodError as err:
        print(f"sealpod enclave: error: {err}", file=sys.stderr)
        os._exit(125)
    code = boot_reporting(request)
    sys.stdout.flush()
    os._exit(code)
