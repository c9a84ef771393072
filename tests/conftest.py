"""Shared fixtures: real docker-registry servers on 127.0.0.1 and helpers to run the peer tools."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealpod.oci.localregistry import LocalRegistry

REGISTRY_USER = "tenant"
REGISTRY_PASSWORD = "s3cret-pass"


def need(tool: str) -> str:
    """The path of a required peer tool; the suite fails (not skips) without it: setup.sh installs them."""
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: run ./setup.sh test")
    return path


def run_tool(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a peer tool, failing the test with its output if it fails."""
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """An anonymous docker-registry on 127.0.0.1."""
    need("docker-registry")
    server = LocalRegistry(tmp_path_factory.mktemp("registry")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """A docker-registry that requires htpasswd (bcrypt) basic auth."""
    need("docker-registry")
    htpasswd = need("htpasswd")
    base = tmp_path_factory.mktemp("auth-registry")
    line = run_tool(htpasswd, "-Bbn", REGISTRY_USER, REGISTRY_PASSWORD).stdout.strip()
    (base / "htpasswd").write_text(line + "\n")
    server = LocalRegistry(base / "store", htpasswd=base / "htpasswd").start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _isolated_auth_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the user's own credentials out of every test."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every path below ``root`` with its type, mode, owner, link target and content: what a user sees."""
    tree: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = str(full.relative_to(root))
            st = full.lstat()
            mode = st.st_mode
            if full.is_symlink():
                tree[rel] = ("link", os.readlink(full), st.st_uid, st.st_gid)
            elif full.is_dir():
                tree[rel] = ("dir", oct(mode & 0o7777), st.st_uid, st.st_gid)
            elif full.is_file():
                tree[rel] = ("file", oct(mode & 0o7777), st.st_uid, st.st_gid, full.read_bytes(), st.st_nlink)
            else:
                tree[rel] = ("other", oct(mode), st.st_uid, st.st_gid)
    return tree


REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def trixie_tools() -> Path:
    """Debian 13's skopeo 1.18 and cosign 2.5, fetched (not installed) by scripts/fetch-trixie-tools.sh."""
    script = REPO / "scripts" / "fetch-trixie-tools.sh"
    proc = subprocess.run([str(script)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"fetching Debian 13 skopeo/cosign failed:\n{proc.stderr[-2000:]}")
    return Path(proc.stdout.strip().splitlines()[-1]) / "bin"


# Property tests are derandomized by default so that CI is deterministic; run with HYPOTHESIS_PROFILE=explore to
# search with fresh random examples (that is how the lazily-raised certificate errors were found).
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("default", derandomize=True)
_hypothesis_settings.register_profile("explore", derandomize=False, max_examples=20000)
_hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
