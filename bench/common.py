"""What the benchmarks share: the realistic test image, timing with peak memory, and the report line."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sealpod.oci.build import LayerSpec, build_image

# The tools are measured as installed: with cached bytecode. Without it every sealpod process compiles what it imports
# (~35 ms of a 1 MB pull), so the children this bench starts may write and use it whatever this shell says.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

ROOTS = [*sorted(Path("/usr/lib").glob("python3*")), Path("/usr/share")]
SEALPOD = str(Path(sys.executable).with_name("sealpod"))
#: GNU time (Debian's package time), for a command's own peak RSS.
TIME = "/usr/bin/time"


def pick_files(max_bytes: int, max_files: int) -> list[tuple[Path, str]]:
    """Files and dirs from ROOTS, in a stable order, until either bound is reached (small files of /usr/share are
    passed over so that the image has realistic bulk as well as many entries)."""
    chosen: list[tuple[Path, str]] = []
    total = 0
    for root in ROOTS:
        min_size = 12 * 1024 if root == Path("/usr/share") else 0
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            here = Path(dirpath)
            chosen.append((here, str(here.relative_to("/"))))
            for name in sorted(filenames):
                path = here / name
                if path.is_symlink() or not path.is_file():
                    continue
                size = path.stat().st_size
                if size < min_size:
                    continue
                if total + size > max_bytes or len(chosen) >= max_files:
                    return chosen
                total += size
                chosen.append((path, str(path.relative_to("/"))))
    return chosen


def build_bench_image(layout: Path, mb: int, files: int) -> str:
    """The realistic image (three gzip layers) in an OCI layout under tag ``bench``; returns a description."""
    chosen = pick_files(mb * 1024 * 1024, files)
    third = len(chosen) // 3
    build_image(
        layout,
        "bench",
        [
            LayerSpec(files=chosen[:third]),
            LayerSpec(files=chosen[third : 2 * third]),
            LayerSpec(files=chosen[2 * third :]),
        ],
    )
    size = sum(p.stat().st_size for p, _ in chosen if p.is_file())
    blobs = sum(p.stat().st_size for p in (layout / "blobs/sha256").iterdir())
    return f"{len(chosen)} entries, {size / 1e6:.0f} MB uncompressed, {blobs / 1e6:.0f} MB of blobs"


def need_tools(*tools: str) -> None:
    """Exit with a hint unless every tool is installed."""
    for tool in tools:
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed: run ./setup.sh test first")


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one command (after a sync, so earlier writeback does not interfere).

    The peak is GNU time's (``%M``) of the command alone: the rusage of a child of this process would report this
    process's own RSS at the fork (46 MiB for ``true``), since Linux keeps the forked image's high-water mark
    across the exec.
    """
    os.sync()
    with tempfile.NamedTemporaryFile("r", prefix="sealpod-bench-time-") as report:
        start = time.perf_counter()
        proc = subprocess.run(
            [TIME, "-f", "%M", "-o", report.name, *cmd],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
            check=False,
        )
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed: {proc.stderr.decode(errors='replace')}")
        peak_kib = int(report.read().split()[-1])
    return elapsed, peak_kib * 1024


def default_dir() -> str:
    """/dev/shm when present (see bench/pull.py for why), else the temp dir."""
    import tempfile

    return "/dev/shm" if Path("/dev/shm").is_dir() else tempfile.gettempdir()


def report(label: str, seconds: float, peak: int) -> str:
    """One aligned result line."""
    return f"{label:34} {seconds:6.2f} s  peak {peak / 2**20:5.0f} MiB"


def rsa_key_files(work: Path) -> tuple[Path, Path]:
    """An RSA-2048 key pair as PEM files in ``work``: (private, public)."""
    key = rsa.generate_private_key(65537, 2048)
    private, public = work / "priv.pem", work / "pub.pem"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public


def image_bench_args(description: str, *, rounds: int = 3, mb: int = 200, files: int = 7000) -> argparse.Namespace:
    """The options every image benchmark takes: --rounds, --mb, --files, --dir."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--mb", type=int, default=mb)
    parser.add_argument("--files", type=int, default=files)
    parser.add_argument("--dir", default=default_dir(), help="where every side writes (default: %(default)s)")
    return parser.parse_args()
