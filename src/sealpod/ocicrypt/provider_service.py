"""sealpod as an ocicrypt key provider (``sealpod keyprovider``): the command protocol on stdin/stdout and a gRPC
server, wrapping layer keys in CoCo annotation packets with KEKs from a :class:`~.keywrap.kbs.KekStore`.

Wrap parameters use CoCo's syntax, ``provider:NAME:keyid=kbs:///repo/type/tag::keypath=/path/kek``: ``keypath``
gives a 32-byte KEK file, else the store's KEK for ``keyid`` is used, else a new random KEK is made and kept in the
store (register it with the KBS so that enclaves can fetch it). Without ``keyid`` a new
``kbs:///default/image-kek/<uuid>`` is chosen.
"""

from __future__ import annotations

import os
import uuid
from concurrent import futures
from pathlib import Path
from typing import Any

from sealpod.errors import CryptoError, SealpodError
from sealpod.ocicrypt.keywrap import kbs
from sealpod.ocicrypt.keywrap.protocol import (
    GRPC_SERVICE,
    ProviderRequest,
    pb_decode,
    pb_encode,
    unwrap_response,
    wrap_response,
)


def parse_params(parameters: dict[str, list[bytes]]) -> dict[str, str]:
    """CoCo ``key=value::key=value`` parameters from the first value given for any provider name."""
    for values in parameters.values():
        for value in values:
            text = value.decode(errors="replace")
            if text in ("", "Enabled"):
                continue
            pairs = {}
            for item in text.split("::"):
                key, sep, val = item.partition("=")
                if sep:
                    pairs[key.strip()] = val.strip()
            return pairs
    return {}


class KeyProviderService:
    """Answers keywrap and keyunwrap requests."""

    def __init__(self, store: kbs.KekStore) -> None:
        self.store = store

    def _kek_for(self, params: dict[str, str]) -> tuple[str, bytes]:
        kid = params.get("keyid") or f"kbs:///{kbs.DEFAULT_KEK_REPOSITORY}/{uuid.uuid4()}"
        keypath = params.get("keypath")
        if keypath:
            try:
                kek = Path(keypath).read_bytes()
            except OSError as err:
                raise CryptoError(f"cannot read KEK file {keypath}: {err.strerror}") from None
            self.store.put(kid, kek)
            return kid, kek
        return kid, self.store.get_or_add(kid, lambda: os.urandom(kbs.KEK_SIZE))

    def handle(self, raw: bytes) -> bytes:
        """One protocol exchange: request JSON in, response JSON out."""
        request = ProviderRequest.from_json(raw)
        if request.op == "keywrap":
            assert request.optsdata is not None
            kid, kek = self._kek_for(parse_params(request.parameters))
            return wrap_response(kbs.wrap(request.optsdata, kid, kek))
        assert request.annotation is not None
        return unwrap_response(kbs.unwrap(request.annotation, self.store.get))


def serve_grpc(service: KeyProviderService, address: str, *, workers: int = 4) -> Any:
    """Start the gRPC server on ``address`` (HOST:PORT) and return it (call ``stop`` to end it)."""
    import grpc

    def method(raw: bytes, context: Any) -> bytes:
        try:
            return service.handle(raw)
        except SealpodError as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
            raise  # unreachable: abort raises

    handlers = {
        name: grpc.unary_unary_rpc_method_handler(method, request_deserializer=pb_decode, response_serializer=pb_encode)
        for name in ("WrapKey", "UnWrapKey")
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(GRPC_SERVICE, handlers),))
    if server.add_insecure_port(address) == 0:
        raise SealpodError(f"cannot listen on {address}", hint="choose a free HOST:PORT")
    server.start()
    return server
