"""The command line as a user meets it: output, exit codes, one-line errors with hints, --debug, --help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sealpod.oci.localregistry import LocalRegistry
from tests.conftest import need, run_tool
from tests.helpers import E, image_from_tars, make_tar

SEALPOD = str(Path(sys.executable).with_name("sealpod"))


def sealpod(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SEALPOD, *map(str, args)], capture_output=True, text=True, check=False)


@pytest.fixture
def layout(tmp_path: Path) -> str:
    digest = image_from_tars(
        tmp_path / "layout",
        "v1",
        [make_tar([E("etc", "dir"), E("etc/os", data=b"sealpod\n")])],
        config={"Entrypoint": ["/bin/app"], "Env": ["A=1"]},
    )
    (tmp_path / "digest").write_text(digest)
    return f"oci:{tmp_path / 'layout'}:v1"


def test_pull_prints_the_digest_and_is_quiet_when_piped(layout: str, tmp_path: Path) -> None:
    proc = sealpod("pull", layout, "--rootfs", tmp_path / "rootfs")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (tmp_path / "digest").read_text()
    assert "\x1b[" not in proc.stderr
    assert "1 layers, 2 entries" in proc.stderr
    assert (tmp_path / "rootfs/etc/os").read_text() == "sealpod\n"


def test_registries_d_is_read_only_when_a_policy_requirement_needs_signatures(layout: str, tmp_path: Path) -> None:
    broken = tmp_path / "registries.d"
    broken.mkdir()
    (broken / "bad.yaml").write_text("docker: [unclosed\n")
    accept = tmp_path / "accept.json"
    accept.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    proc = sealpod("pull", layout, "--rootfs", tmp_path / "a", "--policy", accept, "--registries-d", broken)
    assert proc.returncode == 0, proc.stderr  # as containers/image: no signature is looked for, nothing is read
    signed = tmp_path / "signed.json"
    key = tmp_path / "cosign.pub"
    key.write_text("unused")
    signed.write_text(json.dumps({"default": [{"type": "sigstoreSigned", "keyPath": str(key)}]}))
    proc = sealpod("pull", layout, "--rootfs", tmp_path / "b", "--policy", signed, "--registries-d", broken)
    assert proc.returncode == 2  # a configuration error (exit 2, as other policy errors)
    assert f"registries.d: cannot read {broken / 'bad.yaml'}" in proc.stderr
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())


def test_errors_are_one_line_with_a_hint_and_a_traceback_only_with_debug(layout: str, tmp_path: Path) -> None:
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "rootfs/x").touch()
    proc = sealpod("pull", layout, "--rootfs", tmp_path / "rootfs")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("error: ")
    assert "not empty" in lines[0]
    assert lines[1].startswith("hint: ")
    assert "Traceback" not in proc.stderr
    debug = sealpod("--debug", "pull", layout, "--rootfs", tmp_path / "rootfs")
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["pull", "Bad/Name", "--rootfs", "/tmp/x"], 2, "must be lowercase"),
        (["pull", "oci:/nonexistent/dir:v1", "--rootfs", "/tmp/x"], 1, "not an OCI image layout"),
        (["pull", "docker-archive:/x.tar", "--rootfs", "/tmp/x"], 2, "unsupported transport"),
        (["inspect", "127.0.0.1:1/app:v1", "--tls-verify=false"], 1, "cannot reach registry"),
        (["inspect", "alpine", "--platform", "linux"], 2, "invalid platform"),
        (["inspect", "alpine", "--tls-verify=maybe"], 2, "not true or false"),
    ],
)
def test_user_errors(args: list[str], code: int, message: str) -> None:
    proc = sealpod(*args)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_inspect_json(layout: str, tmp_path: Path) -> None:
    proc = sealpod("inspect", layout, "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["digest"] == (tmp_path / "digest").read_text()
    assert info["platform"] == "linux/amd64"
    assert info["entrypoint"] == ["/bin/app"]
    assert info["env"] == ["A=1"]
    assert len(info["layers"]) == 1
    assert info["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    table = sealpod("inspect", layout)
    assert info["digest"] in table.stdout


def test_inspect_and_pull_from_a_registry(layout: str, registry: LocalRegistry, tmp_path: Path) -> None:
    ref = f"{registry.host}/cli/app:v1"
    run_tool(need("skopeo"), "copy", "--dest-tls-verify=false", layout, f"docker://{ref}")
    raw = sealpod("inspect", "--raw", f"docker://{ref}", "--tls-verify=false")
    assert raw.returncode == 0, raw.stderr
    skopeo_raw = run_tool(need("skopeo"), "inspect", "--raw", "--tls-verify=false", f"docker://{ref}").stdout
    assert raw.stdout.strip() == skopeo_raw.strip()
    proc = sealpod("pull", ref, "--rootfs", tmp_path / "rootfs", "--tls-verify=false", "--platform", "linux/amd64")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "rootfs/etc/os").read_text() == "sealpod\n"
    refused = sealpod("pull", ref, "--rootfs", tmp_path / "rootfs2")
    assert refused.returncode == 1
    assert "--tls-verify=false" in refused.stderr


def test_help_teaches() -> None:
    top = sealpod("--help")
    assert top.returncode == 0
    for command in ("pull", "inspect", "demo"):
        assert command in top.stdout
    pull_help = sealpod("pull", "--help").stdout
    for option in ("--rootfs", "--platform", "--tls-verify", "--ca-file", "oci:DIR"):
        assert option in pull_help
