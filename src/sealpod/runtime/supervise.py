"""``python -m sealpod.runtime.supervise ID``: run a detached container's enclave and record its exit status.

One supervisor stays for each detached container as long as it runs, so it loads only the interpreter's built-in
modules (:mod:`sealpod.runtime.launch`, the boot request, :mod:`sealpod.boundary.jsontext`): ~4 MiB of memory
instead of ~8 with the container records' module. It reads the record :mod:`sealpod.runtime.containers` wrote, and
writes ``enclave-pid`` when the enclave runs and ``exit-code`` when it ended (each atomically), nothing else."""

from __future__ import annotations

import os
import sys

from sealpod.boundary import jsontext
from sealpod.boundary.request import BootRequest
from sealpod.config import containers_dir_name
from sealpod.errors import SealpodError
from sealpod.runtime.launch import run_enclave

#: What the supervisor writes in the container's directory.
ENCLAVE_PID = "enclave-pid"
EXIT_CODE = "exit-code"


def _write(directory: str, name: str, text: str) -> None:
    tmp = os.path.join(directory, f"{name}.tmp")
    with open(tmp, "w") as out:
        out.write(text)
    os.rename(tmp, os.path.join(directory, name))


def main() -> None:
    """Run the enclave for the container named on the command line; write ``exit-code`` when it ends."""
    directory = os.path.join(containers_dir_name(), sys.argv[1])
    try:
        with open(os.path.join(directory, "state.json"), "rb") as record_file:
            record = jsontext.loads(record_file.read())
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as err:
        print(f"sealpod: container record {directory} is unreadable: {err}", file=sys.stderr)
        sys.exit(125)
    try:
        request = BootRequest.from_values(record.get("request"))  # checked like any request
    except SealpodError as err:
        print(f"sealpod: container record {directory}: {err}", file=sys.stderr)
        sys.exit(125)
    code = run_enclave(request, on_start=lambda pid: _write(directory, ENCLAVE_PID, str(pid)))
    if record.get("auto_remove") is True:
        import shutil  # only then: this process stays as long as its container

        shutil.rmtree(directory, ignore_errors=True)
        os._exit(0)
    _write(directory, EXIT_CODE, str(code))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
