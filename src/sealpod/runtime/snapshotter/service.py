"""The gRPC ``containerd.services.snapshots.v1.Snapshots`` servicer over the overlay snapshotter.

Errors reach containerd as the status codes its ``errdefs.FromGRPC`` understands: NOT_FOUND, ALREADY_EXISTS,
FAILED_PRECONDITION, INVALID_ARGUMENT; anything unexpected as UNKNOWN. The request's ``snapshotter`` field (the
proxy plugin's name) is ignored: this server serves one snapshotter.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import grpc
from google.protobuf import empty_pb2, timestamp_pb2

from sealpod.runtime.snapshotter.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    SnapshotError,
)
from sealpod.runtime.snapshotter.overlay import Mount, OverlaySnapshotter
from sealpod.runtime.snapshotter.proto import mount_pb2, snapshots_pb2, snapshots_pb2_grpc
from sealpod.runtime.snapshotter.remote import RemoteDecider, walk_order
from sealpod.runtime.snapshotter.store import Info

log = logging.getLogger(__name__)

MAX_LABEL_SIZE = 4096
LIST_BATCH = 100

_CODES: dict[type[SnapshotError], grpc.StatusCode] = {
    NotFoundError: grpc.StatusCode.NOT_FOUND,
    AlreadyExistsError: grpc.StatusCode.ALREADY_EXISTS,
    FailedPreconditionError: grpc.StatusCode.FAILED_PRECONDITION,
    InvalidArgumentError: grpc.StatusCode.INVALID_ARGUMENT,
}

F = TypeVar("F", bound=Callable[..., Any])


def status_code(err: SnapshotError) -> grpc.StatusCode:
    """The gRPC code of a snapshot error."""
    for cls, code in _CODES.items():
        if isinstance(err, cls):
            return code
    return grpc.StatusCode.UNKNOWN


def _abort(context: grpc.ServicerContext, method: str, err: Exception) -> None:
    if isinstance(err, SnapshotError):
        log.debug("%s: %s", method, err)
        context.abort(status_code(err), str(err))
    log.exception("%s failed", method)
    context.abort(grpc.StatusCode.UNKNOWN, f"{method}: {err}")


def _rpc(method: F) -> F:
    """Map the snapshotter's exceptions to gRPC status codes (for unary methods)."""

    @functools.wraps(method)
    def wrapper(self: SnapshotsService, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as err:
            _abort(context, method.__name__, err)
            raise  # not reached: abort raises

    return wrapper  # type: ignore[return-value]


def validate_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """The labels as a dict, INVALID_ARGUMENT if a pair is over containerd's 4096-byte limit."""
    for key, value in labels.items():
        if len(key.encode()) + len(value.encode()) > MAX_LABEL_SIZE:
            raise InvalidArgumentError(f"label key and value greater than maximum size ({MAX_LABEL_SIZE} bytes): {key}")
    return dict(labels)


def _timestamp(ns: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000)


def info_to_pb(info: Info) -> snapshots_pb2.Info:
    """A store Info as the API message."""
    return snapshots_pb2.Info(
        name=info.name,
        parent=info.parent,
        kind=info.kind.name,
        created_at=_timestamp(info.created),
        updated_at=_timestamp(info.updated),
        labels=info.labels,
    )


def mounts_to_pb(mounts: list[Mount]) -> list[mount_pb2.Mount]:
    """Mounts as API messages."""
    return [mount_pb2.Mount(type=m.type, source=m.source, options=list(m.options)) for m in mounts]


class SnapshotsService(snapshots_pb2_grpc.SnapshotsServicer):
    """containerd's snapshot API over an :class:`OverlaySnapshotter`, with encrypted images made remote."""

    def __init__(self, snapshotter: OverlaySnapshotter, remote: RemoteDecider | None) -> None:
        self.sn = snapshotter
        self.remote = remote

    @_rpc
    def Prepare(
        self, request: snapshots_pb2.PrepareSnapshotRequest, context: grpc.ServicerContext
    ) -> snapshots_pb2.PrepareSnapshotResponse:
        """A new active snapshot, or ALREADY_EXISTS after making a remote one for an encrypted image's layer."""
        labels = validate_labels(request.labels)
        log.debug("prepare key=%s parent=%s labels=%s", request.key, request.parent, labels)
        if self.remote is not None:
            self.remote.prepare(request.key, request.parent, labels)  # raises ALREADY_EXISTS when remote
        mounts = self.sn.prepare(request.key, request.parent, labels)
        return snapshots_pb2.PrepareSnapshotResponse(mounts=mounts_to_pb(mounts))

    @_rpc
    def View(
        self, request: snapshots_pb2.ViewSnapshotRequest, context: grpc.ServicerContext
    ) -> snapshots_pb2.ViewSnapshotResponse:
        """A new read-only snapshot."""
        labels = validate_labels(request.labels)
        log.debug("view key=%s parent=%s labels=%s", request.key, request.parent, labels)
        mounts = self.sn.view(request.key, request.parent, labels)
        return snapshots_pb2.ViewSnapshotResponse(mounts=mounts_to_pb(mounts))

    @_rpc
    def Mounts(
        self, request: snapshots_pb2.MountsRequest, context: grpc.ServicerContext
    ) -> snapshots_pb2.MountsResponse:
        """The mounts of an active snapshot or view."""
        log.debug("mounts key=%s", request.key)
        return snapshots_pb2.MountsResponse(mounts=mounts_to_pb(self.sn.mounts(request.key)))

    @_rpc
    def Commit(self, request: snapshots_pb2.CommitSnapshotRequest, context: grpc.ServicerContext) -> empty_pb2.Empty:
        """Commit an active snapshot under a name."""
        labels = validate_labels(request.labels)
        log.debug("commit name=%s key=%s labels=%s", request.name, request.key, labels)
        self.sn.commit(request.name, request.key, labels)
        return empty_pb2.Empty()

    @_rpc
    def Remove(self, request: snapshots_pb2.RemoveSnapshotRequest, context: grpc.ServicerContext) -> empty_pb2.Empty:
        """Remove a snapshot without children."""
        log.debug("remove key=%s", request.key)
        self.sn.remove(request.key)
        return empty_pb2.Empty()

    @_rpc
    def Stat(
        self, request: snapshots_pb2.StatSnapshotRequest, context: grpc.ServicerContext
    ) -> snapshots_pb2.StatSnapshotResponse:
        """The info of a snapshot."""
        log.debug("stat key=%s", request.key)
        return snapshots_pb2.StatSnapshotResponse(info=info_to_pb(self.sn.stat(request.key)))

    @_rpc
    def Update(
        self, request: snapshots_pb2.UpdateSnapshotRequest, context: grpc.ServicerContext
    ) -> snapshots_pb2.UpdateSnapshotResponse:
        """Update labels per the field mask (``labels``, ``labels.KEY``; empty: all labels)."""
        labels = validate_labels(request.info.labels)
        paths = list(request.update_mask.paths)
        log.debug("update name=%s paths=%s labels=%s", request.info.name, paths, labels)
        info = self.sn.update(request.info.name, labels, paths)
        return snapshots_pb2.UpdateSnapshotResponse(info=info_to_pb(info))

    def List(
        self, request: snapshots_pb2.ListSnapshotsRequest, context: grpc.ServicerContext
    ) -> Iterator[snapshots_pb2.ListSnapshotsResponse]:
        """Snapshot infos matching the filters, in batches; remote snapshots first (see :func:`walk_order`)."""
        filters = list(request.filters)
        log.debug("list filters=%s", filters)
        try:
            infos = walk_order(self.sn.walk(filters))
        except Exception as err:
            _abort(context, "List", err)
            raise
        for start in range(0, len(infos), LIST_BATCH):
            batch = infos[start : start + LIST_BATCH]
            yield snapshots_pb2.ListSnapshotsResponse(info=[info_to_pb(i) for i in batch])

    @_rpc
    def Usage(self, request: snapshots_pb2.UsageRequest, context: grpc.ServicerContext) -> snapshots_pb2.UsageResponse:
        """Bytes and inodes of a snapshot's own directory."""
        log.debug("usage key=%s", request.key)
        usage = self.sn.usage(request.key)
        return snapshots_pb2.UsageResponse(size=usage.size, inodes=usage.inodes)

    @_rpc
    def Cleanup(self, request: snapshots_pb2.CleanupRequest, context: grpc.ServicerContext) -> empty_pb2.Empty:
        """Remove directories no snapshot owns."""
        log.debug("cleanup")
        self.sn.cleanup()
        return empty_pb2.Empty()


def add_to_server(service: SnapshotsService, server: grpc.Server) -> None:
    """Register the servicer on a gRPC server."""
    snapshots_pb2_grpc.add_SnapshotsServicer_to_server(service, server)  # type: ignore[no-untyped-call]
