"""CoCo init-data: parsing (each malformed input refused, naming what is wrong), the digest as trustee computes it,
the claims as trustee makes them, the binding check, and the pod annotation's encoding."""

from __future__ import annotations

import base64
import gzip
import hashlib

import pytest

from sealpod.attestation.init_data import InitData, InitDataError, check_binding
from sealpod.runtime.oci_bundle import decode_init_data

CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
GOOD = (
    'version = "0.1.0"\nalgorithm = "sha384"\n[data]\n'
    "\"aa.toml\" = '''\n[token_configs.kbs]\nurl = \"https://kbs.example:8080\"\n'''\n"
    '"cdh.toml" = \'\'\'\n[kbc]\nname = "cc_kbc"\nurl = "https://kbs.example:8080"\n\n[image]\n'
    "image_security_policy_uri = \"kbs:///tenant/policy/images\"\n'''\n"
    '"policy.rego" = \'\'\'\npackage agent_policy\npolicy_data := {"containers": [{"image": "app"}]}\n\'\'\'\n'
)


def test_a_good_init_data_gives_its_digest_settings_and_claims() -> None:
    parsed = InitData.parse(GOOD)
    assert parsed.digest == hashlib.sha384(GOOD.encode()).digest()  # over the whole text, as trustee hashes it
    assert parsed.config_id == parsed.digest + bytes(16)  # SGX's 64-byte CONFIGID, zero-padded
    settings = parsed.kbs_settings()
    assert settings is not None
    assert (settings.url, settings.cert) == ("https://kbs.example:8080", None)
    assert parsed.image_setting("image_security_policy_uri") == "kbs:///tenant/policy/images"
    claims = parsed.claims()
    assert claims["cdh.toml"]["kbc"]["url"] == "https://kbs.example:8080"  # TOML members as tables
    assert claims["aa.toml"]["token_configs"]["kbs"]["url"] == "https://kbs.example:8080"
    assert claims["agent_policy_claims"] == {"containers": [{"image": "app"}]}  # trustee's policy_data extraction
    assert "policy.rego" not in claims
    for algorithm, digest in (("sha256", hashlib.sha256), ("sha512", hashlib.sha512)):
        text = GOOD.replace('"sha384"', f'"{algorithm}"')
        assert InitData.parse(text).digest == digest(text.encode()).digest()
    check_binding(parsed, parsed.config_id.hex())  # its own CONFIGID passes


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version = [", "is not valid TOML"),
        ('version = "0.2.0"\nalgorithm = "sha384"\n', "version '0.2.0' is not supported"),
        ('algorithm = "sha384"\n', "version None is not supported"),
        ('version = "0.1.0"\nalgorithm = "md5"\n', "algorithm 'md5' is not supported"),
        ('version = "0.1.0"\nalgorithm = "sha384"\nextra = 1\n', "unknown top-level keys: extra"),
        ('version = "0.1.0"\nalgorithm = "sha384"\n[data]\nx = 1\n', "data must be a table of strings"),
        ('version = "0.1.0"\nalgorithm = "sha384"\n[data]\n"cdh.toml" = "[kbc"\n', "cdh.toml is not valid TOML"),
        (
            'version = "0.1.0"\nalgorithm = "sha384"\n[data]\n"cdh.toml" = "[kbc]\\nurl = 7"\n',
            "url must be a string",
        ),
        (
            'version = "0.1.0"\nalgorithm = "sha384"\n[data]\n"cdh.toml" = "[kbc]\\nurl = \\"http://a\\"\\n'
            'kbs_cert = \\"not a cert\\""\n',
            "kbs_cert must be a PEM certificate",
        ),
        (
            'version = "0.1.0"\nalgorithm = "sha384"\n[data]\n"cdh.toml" = "[kbc]\\nurl = \\"http://a\\""\n'
            '"aa.toml" = "[token_configs.kbs]\\nurl = \\"http://b\\""\n',
            "names two KBSes",
        ),
    ],
)
def test_malformed_init_data_is_refused_naming_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InitDataError, match=message):
        InitData.parse(text)


def test_oversized_or_undecodable_init_data_is_refused() -> None:
    with pytest.raises(InitDataError, match="over 65536 bytes"):
        InitData.parse(b"#" * 70_000)
    with pytest.raises(InitDataError, match="not UTF-8"):
        InitData.parse(b"\xff\xfe")


def test_a_digest_mismatch_is_refused_naming_both() -> None:
    parsed = InitData.parse(GOOD)
    other = InitData.parse(GOOD.replace("kbs.example", "kbs.other"))
    with pytest.raises(InitDataError, match="does not match the enclave's CONFIGID"):
        check_binding(parsed, other.config_id.hex())


def test_the_pod_annotation_decodes_base64_of_the_toml_gzipped_or_not() -> None:
    assert decode_init_data(base64.b64encode(gzip.compress(GOOD.encode())).decode(), "a") == GOOD
    assert decode_init_data(base64.b64encode(GOOD.encode()).decode(), "a") == GOOD
    with pytest.raises(Exception, match="not base64"):
        decode_init_data("!!", "a")
    with pytest.raises(Exception, match="over 65536 bytes"):
        decode_init_data(base64.b64encode(gzip.compress(b"#" * 100_000)).decode(), "a")
