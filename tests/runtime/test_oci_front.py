"""sealpod-runtime's front: runc's calls go to runc, with containerd's arguments and before anything of the enclave
side is loaded; whatever it cannot rule out goes to the full runtime."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sealpod.runtime.oci_front import belongs_to_runc, configured_runc
from sealpod.runtime.oci_invocation import Invocation
from sealpod.runtime.oci_names import MARKER_PATH, RECORD

HEAVY = (
    "json",
    "re",
    "dataclasses",
    "pathlib",
    "subprocess",
    "typing",
    "logging",
    "tomllib",
    "sealpod.runtime.oci_runtime",
)


def _bundle(tmp_path: Path, annotations: dict[str, str] | None = None, marker: bool = False) -> Path:
    bundle = tmp_path / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    (bundle / "config.json").write_text(json.dumps({"root": {"path": "rootfs"}, "annotations": annotations or {}}))
    if marker:
        (bundle / "rootfs" / MARKER_PATH).parent.mkdir(parents=True)
        (bundle / "rootfs" / MARKER_PATH).write_text("{}")
    return bundle


def _create(bundle: Path) -> Invocation:
    return Invocation.parse(["--root", "/run/x", "create", "--bundle", str(bundle), "--pid-file", "p", "c1"])


def test_a_create_belongs_to_runc_for_a_sandbox_or_a_rootfs_without_the_marker(tmp_path: Path) -> None:
    assert belongs_to_runc(_create(_bundle(tmp_path / "plain")))
    assert belongs_to_runc(_create(_bundle(tmp_path / "pause", {"io.kubernetes.cri.container-type": "sandbox"}, True)))
    assert not belongs_to_runc(
        _create(_bundle(tmp_path / "sealpod", {"io.kubernetes.cri.container-type": "container"}, True))
    )


def test_an_unreadable_bundle_goes_to_the_full_runtime(tmp_path: Path) -> None:
    assert not belongs_to_runc(_create(tmp_path / "missing"))
    broken = _bundle(tmp_path / "broken")
    (broken / "config.json").write_text("{not json")
    assert not belongs_to_runc(_create(broken))
    (broken / "config.json").write_text('["not", "an", "object"]')
    assert not belongs_to_runc(_create(broken))


def test_a_container_s_call_belongs_to_runc_unless_it_has_a_sealpod_record(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "enclave").mkdir(parents=True)
    (root / "enclave" / RECORD).write_text("{}")
    for command in ("start", "state", "kill", "delete", "ps", "exec", "pause"):
        assert not belongs_to_runc(Invocation.parse(["--root", str(root), command, "enclave"])), command
        assert belongs_to_runc(Invocation.parse(["--root", str(root), command, "ordinary"])), command
    for odd in ("..", "a/b"):
        assert not belongs_to_runc(Invocation.parse(["--root", str(root), "state", odd]))  # the full runtime refuses it
    assert belongs_to_runc(Invocation.parse(["--root", str(root), "list"]))
    assert belongs_to_runc(Invocation.parse(["--version"]))


def test_the_node_config_s_runc_is_used_and_an_unreadable_config_is_left_to_the_full_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "runtime.toml"
    monkeypatch.setenv("SEALPOD_RUNTIME_CONFIG", str(config))
    assert configured_runc() is not None  # no config: runc from PATH
    config.write_text('kbs_url = "http://k"\nrunc = "/opt/runc"\n')
    assert configured_runc() == "/opt/runc"
    config.write_text("runc = [")
    assert configured_runc() is None
    config.write_text("runc = 1")
    assert configured_runc() is None


def test_runc_gets_containerd_s_arguments_and_nothing_of_the_enclave_side_was_loaded(tmp_path: Path) -> None:
    fake = tmp_path / "runc"
    fake.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "argv"}\n')
    fake.chmod(0o755)
    config = tmp_path / "runtime.toml"
    config.write_text('kbs_url = "http://k"\n')  # no runc key: the one on PATH
    program = (
        "import os, sys\n"
        "real = os.execv\n"
        "def execv(path, args):\n"
        f"    print(' '.join(sorted(m for m in sys.modules if m in {set(HEAVY)!r})), file=sys.stderr)\n"
        "    real(path, args)\n"
        "os.execv = execv\n"
        "sys.argv = ['sealpod-runtime', *sys.argv[1:]]\n"
        "from sealpod.runtime.oci_front import main\n"
        "main()\n"
    )
    argv = ["--root", str(tmp_path / "root"), "--log", "/dev/null", "state", "some-container"]
    env = {**os.environ, "SEALPOD_RUNTIME_CONFIG": str(config), "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-c", program, *argv], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "argv").read_text().split() == argv
    assert proc.stderr.split() == []


def test_a_runc_that_cannot_be_run_is_reported_where_containerd_looks(tmp_path: Path) -> None:
    config = tmp_path / "runtime.toml"
    config.write_text(f'runc = "{tmp_path / "no-such-runc"}"\n')
    log = tmp_path / "runtime.log"
    argv = ["--root", str(tmp_path / "root"), "--log", str(log), "--log-format", "json", "state", "ordinary"]
    env = {**os.environ, "SEALPOD_RUNTIME_CONFIG": str(config)}
    program = (
        "import sys\nsys.argv = ['sealpod-runtime', *sys.argv[1:]]\nfrom sealpod.runtime.oci_front import main\nmain()"
    )
    proc = subprocess.run([sys.executable, "-c", program, *argv], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error"
    assert "no-such-runc" in entry["msg"]
