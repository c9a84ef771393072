"""A stand-in for containerd's runc shim, to drive an OCI runtime the way the shim does: the runtime's ``create`` and
``start`` with this process as the subreaper that adopts and reaps the container's init process.

``python -m tests.runtime.shim RUNTIME ROOT BUNDLE ID LOG`` prints JSON: the exit status of create, start and the
init process, and the state the runtime reported between create and start. The container's stdio goes to LOG.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


def main() -> None:
    runtime, root, bundle, container_id, log = sys.argv[1:6]
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    pid_file = Path(bundle) / "init.pid"
    flags = ["--root", root, "--log", str(Path(bundle) / "runtime.log"), "--log-format", "json"]
    report: dict[str, object] = {}
    with open(log, "wb") as out:
        created = subprocess.run(
            [runtime, *flags, "create", "--bundle", bundle, "--pid-file", str(pid_file), container_id],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            check=False,
        )
    report["create"] = created.returncode
    if created.returncode == 0:
        state = subprocess.run([runtime, *flags, "state", container_id], capture_output=True, text=True, check=False)
        report["state"] = json.loads(state.stdout)["status"] if state.returncode == 0 else state.stderr
        started = subprocess.run([runtime, *flags, "start", container_id], capture_output=True, text=True, check=False)
        report["start"] = started.returncode
        report["start_error"] = started.stderr
        pid = int(pid_file.read_text())
        _, status = os.waitpid(pid, 0)
        report["exit"] = os.waitstatus_to_exitcode(status)
        after = subprocess.run([runtime, *flags, "state", container_id], capture_output=True, text=True, check=False)
        report["state_after"] = json.loads(after.stdout)["status"] if after.returncode == 0 else after.stderr
        deleted = subprocess.run([runtime, *flags, "delete", container_id], capture_output=True, text=True, check=False)
        report["delete"] = deleted.returncode
    print(json.dumps(report))


if __name__ == "__main__":
    main()
