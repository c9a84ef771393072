"""Where the enclave puts a host's volume: resolved inside the rootfs (the image's symlinks followed in-root), and
refused by the run policy before anything is made in the rootfs."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealpod.agent.run_policy import RunPolicy, RunPolicyError
from sealpod.boundary.volumes import VolumeSpec
from sealpod.enclave.volumes import _target, mount_volumes


def _rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "app").mkdir(parents=True)
    (root / "app" / "main").write_text("the image's program")
    (root / "data").symlink_to("/srv/data")  # an absolute link in the image: in-root, not the host's /srv
    return root


def _unseal(sealed: str) -> bytes:
    raise AssertionError("nothing is unsealed before the policy allowed the volume")


def test_a_refused_volume_makes_nothing_in_the_rootfs(tmp_path: Path) -> None:
    root = _rootfs(tmp_path)
    source = tmp_path / "host"
    source.mkdir()
    policy = RunPolicy.parse(b'{"allow_volumes": ["/other"]}', "p")
    for destination, message in (
        ("/data/x", "/data/x: the tenant's run policy does not list it"),
        ("/app", "/app: the tenant's run policy does not list it"),
    ):
        spec = VolumeSpec(str(source), destination)
        with pytest.raises(RunPolicyError, match=message):
            mount_volumes(root, [spec], _unseal, lambda s, covers: policy.check_volume(s.destination, covers, "p"))
    assert not (root / "srv").exists()  # the missing mount point and its parents were not made
    assert sorted(p.name for p in root.iterdir()) == ["app", "data"]
    with pytest.raises(RunPolicyError, match="would cover what the image holds"):
        mount_volumes(
            root,
            [VolumeSpec(str(source), "/app")],
            _unseal,
            lambda s, c: RunPolicy().check_volume(s.destination, c, "p"),
        )


def test_the_mount_point_follows_the_image_s_symlinks_inside_the_rootfs(tmp_path: Path) -> None:
    root = _rootfs(tmp_path)
    seen: list[bool] = []
    target = _target(root, VolumeSpec("/h", "/data/x"), True, lambda spec, covers: seen.append(covers))
    assert target == f"{root}/srv/data/x"  # under the rootfs, though the link is absolute
    assert (root / "srv" / "data" / "x").is_dir()
    assert seen == [False]
