"""A real KBS checks that the init-data sent with the evidence is what the enclave was launched with (its digest
as the quote's CONFIGID), refuses it otherwise, and puts its claims in the token as trustee does."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import pytest

from sealpod.attestation.init_data import InitData
from sealpod.kbs.client.rcar import KbsClient, KbsClientError
from sealpod.tee.sim import SimPlatform
from tests.attestation.test_init_data import GOOD
from tests.kbs.conftest import MRE, MRS, KbsProcess, register_enclave


def test_the_kbs_checks_the_binding_and_puts_the_claims_in_the_token(
    kbs_factory: Callable[..., KbsProcess], sim: SimPlatform
) -> None:
    server = kbs_factory()
    register_enclave(server.url)
    parsed = InitData.parse(GOOD)
    bound = sim.attester(mr_enclave=MRE, mr_signer=MRS, config_id=parsed.config_id)
    with KbsClient(server.url, bound, init_data=GOOD) as client:
        token = client.attest()
    claims = _token_claims(token)
    evidence = claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]
    assert evidence["init_data"] == parsed.config_id.hex()
    assert evidence["init_data_claims"]["cdh.toml"]["kbc"]["url"] == "https://kbs.example:8080"

    # an enclave launched with other init-data than it sends is refused
    other = sim.attester(mr_enclave=MRE, mr_signer=MRS, config_id=bytes(64))
    with KbsClient(server.url, other, init_data=GOOD) as client, pytest.raises(KbsClientError) as refused:
        client.attest()
    assert "does not match the enclave's CONFIGID" in str(refused.value)
    # malformed init-data in the message is refused by name
    with KbsClient(server.url, bound, init_data="version = [") as client, pytest.raises(KbsClientError) as bad:
        client.attest()
    assert "init-data is not valid TOML" in str(bad.value)


def _token_claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded
