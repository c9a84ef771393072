"""The workload comes from the verified image config: entrypoint + cmd, env, workdir, user from the image's files."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealpod.enclave.workload import workload_for
from sealpod.errors import SealpodError
from sealpod.oci.models import ImageConfig


def config(**container: object) -> ImageConfig:
    return ImageConfig.from_wire(
        {"architecture": "amd64", "os": "linux", "config": container, "rootfs": {"type": "layers", "diff_ids": []}}
    )


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/app:/bin/sh\n")
    (tmp_path / "etc/group").write_text("root:x:0:\nstaff:x:50:\n")
    return tmp_path


def test_entrypoint_cmd_env_workdir_and_named_user(rootfs: Path) -> None:
    w = workload_for(
        config(Entrypoint=["/bin/app"], Cmd=["--serve"], Env=["A=1", "PATH=/app/bin"], User="app", WorkingDir="srv"),
        rootfs,
    )
    assert w.argv == ["/bin/app", "--serve"]
    assert w.env == {"PATH": "/app/bin", "A": "1"}
    assert w.cwd == "/srv"
    assert (w.uid, w.gid, w.groups) == (1000, 1001, [1001])


def test_host_command_replaces_cmd_and_env_adds(rootfs: Path) -> None:
    w = workload_for(config(Entrypoint=["/bin/sh", "-c"], Cmd=["x"]), rootfs, ["echo hi"], ["B=2"])
    assert w.argv == ["/bin/sh", "-c", "echo hi"]
    assert w.env["B"] == "2"
    assert w.env["PATH"].startswith("/usr/local/sbin")
    assert (w.uid, w.gid, w.cwd) == (0, 0, "/")


def test_numeric_user_and_named_group(rootfs: Path) -> None:
    w = workload_for(config(Cmd=["/x"], User="1000:staff"), rootfs)
    assert (w.uid, w.gid) == (1000, 50)
    w = workload_for(config(Cmd=["/x"], User="4242"), rootfs)
    assert (w.uid, w.gid) == (4242, 4242)


def test_bad_configs_are_refused_by_name(rootfs: Path) -> None:
    with pytest.raises(SealpodError, match="user 'nobody' is not in its /etc/passwd"):
        workload_for(config(Cmd=["/x"], User="nobody"), rootfs)
    with pytest.raises(SealpodError, match="group 'wheel' is not in its /etc/group"):
        workload_for(config(Cmd=["/x"], User="app:wheel"), rootfs)
    with pytest.raises(SealpodError, match="no Entrypoint or Cmd"):
        workload_for(config(), rootfs)
    with pytest.raises(SealpodError, match="'NOEQUALS' is not NAME=VALUE"):
        workload_for(config(Cmd=["/x"], Env=["NOEQUALS"]), rootfs)


def test_passwd_as_a_symlink_is_not_followed(rootfs: Path) -> None:
    (rootfs / "etc/passwd").unlink()
    (rootfs / "etc/passwd").symlink_to("/etc/passwd")
    with pytest.raises(SealpodError, match="user 'root' is not in its /etc/passwd"):
        workload_for(config(Cmd=["/x"], User="root"), rootfs)
