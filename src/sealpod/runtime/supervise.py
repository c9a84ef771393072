"""``python -m sealpod.runtime.supervise ID``: run a detached container's enclave and record its exit status."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from sealpod.boundary.request import BootRequest
from sealpod.runtime.containers import containers_dir, load
from sealpod.runtime.launch import run_enclave


def main() -> None:
    """Run the enclave for the container named on the command line; write ``exit-code`` when it ends."""
    container = load(containers_dir() / sys.argv[1])
    request = BootRequest.from_json(json.dumps(container.request))  # checked like any request

    def started(pid: int) -> None:
        container.enclave_pid = pid
        container.save()

    code = run_enclave(request, on_start=started)
    if container.auto_remove:
        import shutil  # only then: this process stays as long as its container

        shutil.rmtree(container.directory, ignore_errors=True)
        os._exit(0)
    tmp = Path(container.directory) / "exit-code.tmp"
    tmp.write_text(str(code))
    tmp.rename(container.directory / "exit-code")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
