"""The errors of the snapshot API, one class per containerd errdefs class (the service maps them to gRPC codes)."""

from __future__ import annotations

from sealpod.errors import SealpodError


class SnapshotError(SealpodError):
    """Base of the snapshotter's errors; unexpected ones reach containerd as UNKNOWN."""


class NotFoundError(SnapshotError):
    """A key, parent or snapshot does not exist (NOT_FOUND)."""


class AlreadyExistsError(SnapshotError):
    """The key or name is taken, or a remote snapshot now stands for the target (ALREADY_EXISTS)."""


class FailedPreconditionError(SnapshotError):
    """The snapshot is in the wrong state: it has children, or is not active for Commit (FAILED_PRECONDITION)."""


class InvalidArgumentError(SnapshotError):
    """The request is malformed: a non-committed parent, a bad filter or field path (INVALID_ARGUMENT)."""
