"""A runc command line as ``sealpod-runtime`` reads it: the global flags, the command, its flags and its arguments.

Imported by every runtime call containerd makes (:mod:`sealpod.runtime.oci_front`), so it imports nothing."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's own flag would import typing (~2 ms); mypy honours any flag of this name
if TYPE_CHECKING:
    from pathlib import Path

#: runc's default state root (``--root``).
DEFAULT_ROOT = "/run/sealpod-runtime"
_GLOBAL_VALUE_FLAGS = {"--root", "--log", "--log-format", "--criu", "--rootless"}
_VALUE_FLAGS = {
    "--bundle",
    "-b",
    "--pid-file",
    "--console-socket",
    "--preserve-fds",
    "--format",
    "-f",
    "--process",
    "-p",
    "--resources",
    "-r",
    "--cwd",
    "--env",
    "-e",
    "--user",
    "-u",
    "--process-label",
    "--apparmor",
    "--cap",
    "-c",
}
#: The commands of an enclave container that are refused: the host does not reach into an enclave.
REFUSED = frozenset({"exec", "update", "pause", "resume", "checkpoint", "restore", "events"})
#: The commands an enclave container answers itself (with a container id).
ANSWERED = frozenset({"start", "state", "kill", "delete", "ps"})


class Invocation:
    """A runc command line, split into the global flags, the command, its flags and its arguments."""

    __slots__ = ("args", "command", "flags", "global_flags")

    def __init__(self) -> None:
        self.global_flags: dict[str, str] = {}
        self.command = ""
        self.flags: dict[str, str] = {}
        self.args: list[str] = []

    @classmethod
    def parse(cls, argv: list[str]) -> Invocation:
        """Parse ``argv`` (without the program name) the way runc's CLI reads it."""
        result = cls()
        index = 0
        target = result.global_flags
        while index < len(argv):
            item = argv[index]
            index += 1
            if item.startswith("-") and item != "-":
                name, eq, value = item.partition("=")
                takes_value = name in (_GLOBAL_VALUE_FLAGS if not result.command else _VALUE_FLAGS)
                if takes_value and not eq:
                    value = argv[index] if index < len(argv) else ""
                    index += 1
                target[name] = value if takes_value or eq else "true"
            elif not result.command:
                result.command = item
                target = result.flags
            else:
                result.args.append(item)
        return result

    @property
    def root_name(self) -> str:
        """The state root containerd chose (runc's ``--root``)."""
        return self.global_flags.get("--root") or DEFAULT_ROOT

    @property
    def root(self) -> Path:
        """:attr:`root_name` as a path."""
        from pathlib import Path

        return Path(self.root_name)

    @property
    def bundle_name(self) -> str:
        """``create``'s bundle directory (``--bundle``, ``-b``; the working directory by default)."""
        return self.flags.get("--bundle") or self.flags.get("-b") or "."

    def container_id(self) -> str:
        """The container id argument."""
        if not self.args:
            from sealpod.errors import SealpodError

            raise SealpodError(f"{self.command}: a container id is required")
        return self.args[0]
