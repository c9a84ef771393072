"""The enclave's root filesystems, mounted only in its own mount namespace (the host's mount table never shows them).

``memory``: a tmpfs; nothing reaches the disk, gone at exit. ``gocryptfs``: the cipher directory on the host disk
under ``<state>/rootfs/<name>``, its random key sealed to the enclave identity, so a restart of the same enclave on
the same platform opens it again and skips the pull. The gocryptfs mount holds one file, ``rootfs.ext4``, a sparse
ext4 image mounted through a loop device (also only in the enclave's namespace): unpacking thousands of files into
it costs page-cache writes, and gocryptfs sees large block writes instead of several FUSE round trips per file
(7,000 entries: about 0.3 s instead of 5 s). The ext4 root holds ``rootfs/`` (what the workload sees) and
``image-digest`` (which image ``rootfs/`` holds, written only after a complete, verified pull; ext4's ordered
journal puts it on disk only after the files before it). Each volume is
held under a lock while mounted: two enclaves of the same image at once (two pods) get a volume each.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sealpod._internal.processes import stop_process
from sealpod.config import state_dir
from sealpod.enclave import linux
from sealpod.enclave.loopdev import LoopDevice
from sealpod.enclave.sealing import seal, unseal
from sealpod.errors import SealpodError

PURPOSE = "gocryptfs-key"
# Waits (stdin at EOF: the enclave is gone, however it ended), then unmounts in the one safe order: the ext4 image
# while gocryptfs still serves its writes, its loop device released, then gocryptfs (which exits). Without it, an
# enclave killed outright would leave gocryptfs to die first and the image's last writes to hang in the kernel.
_JANITOR = r"""
cat >/dev/null
i=0
while mountpoint -q "$1" && [ $i -lt 400 ]; do umount "$1" 2>/dev/null || sleep 0.05; i=$((i+1)); done
i=0
while grep -qsxF "$3" /sys/block/loop*/loop/backing_file && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done
i=0
while mountpoint -q "$2" && [ $i -lt 400 ]; do umount "$2" 2>/dev/null || sleep 0.05; i=$((i+1)); done
"""
MAX_VOLUMES_PER_IMAGE = 64
IMAGE_NAME = "rootfs.ext4"
IMAGE_SIZE = 64 * 1024**3  # sparse: the ceiling of one rootfs, not what it takes


def private_mount_namespace() -> None:
    """Move this process into its own mount namespace, with no propagation back to the host."""
    linux.unshare(linux.CLONE_NEWNS)
    linux.mount("none", "/", None, linux.MS_REC | linux.MS_PRIVATE)


class MemoryRootfs:
    """A tmpfs in this process's (private) mount namespace."""

    def __init__(self) -> None:
        base = state_dir() / "run"
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.mountpoint = Path(tempfile.mkdtemp(prefix="rootfs-", dir=base))
        linux.mount("tmpfs", str(self.mountpoint), "tmpfs", linux.MS_NODEV, "mode=0755")
        self.rootfs = self.mountpoint / "rootfs"

    def pulled_digest(self) -> str | None:
        """Never anything: a tmpfs starts empty."""
        return None

    def discard(self) -> None:
        """Drop a partial rootfs."""
        shutil.rmtree(self.rootfs, ignore_errors=True)

    def mark_pulled(self, digest: str) -> None:
        """Nothing to remember."""

    def close(self, *, remove: bool = True) -> None:
        """Unmount (the contents are gone) and remove the mount point."""
        linux.umount(str(self.mountpoint), linux.MNT_DETACH)
        shutil.rmtree(self.mountpoint, ignore_errors=True)


def _name_for(image: str) -> str:
    return hashlib.sha256(image.encode()).hexdigest()[:24]


class GocryptfsRootfs:
    """A gocryptfs volume whose cipher directory is on the host disk and whose key is sealed to the enclave."""

    def __init__(self, image: str, sealing_root: bytes, *, base: Path | None = None) -> None:
        binary = shutil.which("gocryptfs")
        if binary is None:
            raise SealpodError("gocryptfs is not installed", hint="apt-get install gocryptfs, or use --rootfs memory")
        self.label = image
        self.directory, self._lock = _free_volume(base or state_dir() / "rootfs", _name_for(image))
        self.cipher = self.directory / "cipher"
        self.sealed_key = self.directory / "key.sealed"
        self.mountpoint = self.directory / "mnt"
        self.fsroot = self.directory / "root"
        self.rootfs = self.fsroot / "rootfs"
        self.mountpoint.mkdir(exist_ok=True)
        self.fsroot.mkdir(exist_ok=True)
        self.loop: LoopDevice | None = None
        password = self._unsealed_password(sealing_root)
        if password is None:
            shutil.rmtree(self.cipher, ignore_errors=True)
            self.cipher.mkdir(mode=0o700)
            password = os.urandom(32).hex().encode()
            # the password is a random 256-bit key, so gocryptfs's scrypt need not be slow
            self._gocryptfs(binary, ["-init", "-q", "-scryptn", "10", str(self.cipher)], password, wait=True)
            tmp = self.sealed_key.with_suffix(".tmp")
            tmp.write_bytes(seal(sealing_root, PURPOSE, image, password))
            tmp.rename(self.sealed_key)
        self.process = self._gocryptfs(
            binary,
            ["-fg", "-q", "-nosyslog", "-allow_other", str(self.cipher), str(self.mountpoint)],
            password,
            wait=False,
        )
        self._wait_mounted()
        self._janitor, self._janitor_process = self._start_janitor()
        try:
            self._mount_image()
        except BaseException:
            self._unmount_gocryptfs()
            self._release_janitor()
            raise

    def _unsealed_password(self, sealing_root: bytes) -> bytes | None:
        """The volume's key, or None when there is no volume or its key does not open here (sealed by another
        enclave build or platform, or altered): such a volume is never used, and is made anew."""
        if not (self.sealed_key.exists() and (self.cipher / "gocryptfs.conf").exists()):
            return None
        try:
            return unseal(sealing_root, PURPOSE, self.label, self.sealed_key.read_bytes())
        except SealpodError as err:
            print(f"sealpod: {err}; starting the rootfs anew (the image is pulled again)", file=sys.stderr)
            return None

    def _release_janitor(self) -> None:
        """Wake the janitor with nothing left to unmount, and reap it."""
        os.close(self._janitor)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._janitor_process.wait(timeout=10)

    def _start_janitor(self) -> tuple[int, subprocess.Popen[bytes]]:
        """Start the janitor in its own session (a kill of the enclave's process group spares it); returns the
        pipe end whose closing (at the enclave's exit, or in :meth:`close`) wakes it."""
        read_end, write_end = os.pipe()
        image = self.mountpoint / IMAGE_NAME
        args = [str(self.fsroot), str(self.mountpoint), str(image)]
        process = subprocess.Popen(
            ["/bin/sh", "-c", _JANITOR, "sealpod-rootfs-janitor", *args],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        os.close(read_end)
        return write_end, process

    def _make_image(self, image: Path) -> None:
        mkfs = shutil.which("mkfs.ext4") or "/usr/sbin/mkfs.ext4"
        tmp = image.with_suffix(".tmp")
        with open(tmp, "wb") as handle:
            handle.truncate(IMAGE_SIZE)
        proc = subprocess.run(
            [mkfs, "-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1", str(tmp)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise SealpodError(f"mkfs.ext4 failed for the rootfs image: {proc.stderr.strip()}")
        tmp.rename(image)

    def _mount_image(self) -> None:
        """Attach ``rootfs.ext4`` (made on first use) to a loop device and mount it at ``root/``; an image that does
        not mount (a crash mid-write the journal could not repair) is made again, and the next pull fills it."""
        image = self.mountpoint / IMAGE_NAME
        for attempt in (1, 2):
            if not image.exists():
                self._make_image(image)
            try:
                self.loop = LoopDevice(str(image))
            except OSError as err:
                raise SealpodError(
                    f"no loop device for the rootfs image: {err}", hint="use --rootfs memory on this host"
                ) from None
            try:
                linux.mount(self.loop.path, str(self.fsroot), "ext4", linux.MS_NODEV | linux.MS_NOSUID)
                return
            except OSError:
                self.loop.detach()
                self.loop = None
                if attempt == 2:
                    raise
                image.unlink()

    @staticmethod
    def _gocryptfs(binary: str, args: list[str], password: bytes, *, wait: bool) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [binary, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # outlives a killed enclave until the janitor has unmounted the image
        )
        assert process.stdin is not None
        process.stdin.write(password + b"\n")
        process.stdin.close()
        if wait and process.wait() != 0:
            err = process.stderr.read().decode(errors="replace").strip() if process.stderr else ""
            raise SealpodError(f"gocryptfs {args[0]} failed: {err}")
        return process

    def _wait_mounted(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.ismount(self.mountpoint):
                return
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace").strip() if self.process.stderr else ""
                raise SealpodError(f"gocryptfs could not mount {self.cipher}: {err}")
            time.sleep(0.005)
        self.process.kill()
        raise SealpodError(f"gocryptfs did not mount {self.cipher} within {timeout} s")

    def pulled_digest(self) -> str | None:
        """The manifest digest of the image ``rootfs/`` holds, if a pull completed."""
        marker = self.fsroot / "image-digest"
        if marker.exists() and self.rootfs.is_dir():
            return marker.read_text().strip()
        return None

    def discard(self) -> None:
        """Drop a rootfs that holds another image (or an interrupted pull)."""
        (self.fsroot / "image-digest").unlink(missing_ok=True)
        shutil.rmtree(self.rootfs, ignore_errors=True)

    def mark_pulled(self, digest: str) -> None:
        """Record that ``rootfs/`` holds the verified image ``digest``."""
        marker = self.fsroot / "image-digest"
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(digest)
        tmp.rename(marker)

    def _unmount_gocryptfs(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                linux.umount(str(self.mountpoint), 0)
                break
            except OSError as err:  # EBUSY while a released loop device still closes the image file
                if err.errno != errno.EBUSY or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
        stop_process(self.process)

    def close(self, *, remove: bool = False) -> None:
        """Unmount; the cipher directory stays for the next start unless ``remove`` (a first pull that failed)."""
        with contextlib.suppress(OSError):
            linux.umount(str(self.fsroot), 0)
        if self.loop:
            self.loop.detach()
        self._unmount_gocryptfs()
        self._release_janitor()
        if remove:
            shutil.rmtree(self.directory, ignore_errors=True)
        os.close(self._lock)


def _free_volume(base: Path, name: str) -> tuple[Path, int]:
    """The first volume directory of the image that no running enclave holds, locked for this one."""
    for slot in range(MAX_VOLUMES_PER_IMAGE):
        directory = base / (name if slot == 0 else f"{name}-{slot}")
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return directory, fd
    raise SealpodError(f"{MAX_VOLUMES_PER_IMAGE} enclaves of this image are running already")
