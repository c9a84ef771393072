"""The KBS's clients and what they share with the service: the RCAR client that runs in the enclave
(:class:`KbsClient`), the tenant's admin client, sealed secrets, the protocol's messages and the resource JWE."""

from sealpod.kbs.client.rcar import KbsClient, KbsClientError

__all__ = ["KbsClient", "KbsClientError"]
