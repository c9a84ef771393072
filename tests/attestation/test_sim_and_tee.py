"""The simulated SGX platform, the Gramine and Occlum attesters (fake device directory, ioctl seam), detect()."""

from __future__ import annotations

import ctypes
import shutil
import time
from pathlib import Path

import pytest

from sealpod.attestation.sgx.quote import parse_quote
from sealpod.attestation.sgx.sim_pcs import SimPcs
from sealpod.attestation.sgx.verify import STATUSES, DcapVerifier, TrustedRoot, intel_root
from sealpod.errors import AttestationError
from sealpod.tee import detect
from sealpod.tee.sgx import OCCLUM_GEN_QUOTE, OCCLUM_GET_QUOTE_SIZE, GramineAttester, OcclumAttester
from sealpod.tee.sim import SimAttester, SimPlatform

MRE, MRS = bytes(range(32)), bytes(range(32, 64))


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> SimPlatform:
    return SimPlatform.load(tmp_path_factory.mktemp("sim"))


def _verifier(platform: SimPlatform) -> DcapVerifier:
    return DcapVerifier([TrustedRoot.from_der("intel", intel_root()), SimPcs(platform.files).root])


def test_sim_quote_verifies_and_carries_the_identity(platform: SimPlatform) -> None:
    quote = platform.quote(report_data=b"nonce-bound", mr_enclave=MRE, mr_signer=MRS, isv_prod_id=7, isv_svn=3)
    verdict = _verifier(platform).verify(quote, SimPcs(platform.files).collateral(), now=int(time.time()))
    assert verdict.root == "sim"
    assert (verdict.quote.report.mr_enclave, verdict.quote.report.mr_signer) == (MRE, MRS)
    assert (verdict.quote.report.isv_prod_id, verdict.quote.report.isv_svn) == (7, 3)
    assert verdict.quote.report.report_data == b"nonce-bound".ljust(64, b"\0")
    claims = verdict.claims()
    assert claims["body"]["mr_enclave"] == MRE.hex()
    assert claims["body"]["isv_prod_id"] == "0700"
    assert claims["root"] == "sim"


def test_sim_root_is_refused_unless_trusted(platform: SimPlatform) -> None:
    quote = platform.quote(report_data=b"x", mr_enclave=MRE, mr_signer=MRS)
    with pytest.raises(AttestationError, match=r"untrusted root .*sealpod sim SGX Root CA"):
        DcapVerifier().verify(quote, SimPcs(platform.files).collateral(), now=int(time.time()))


@pytest.mark.parametrize("status", STATUSES)
def test_each_tcb_status(status: str, tmp_path: Path) -> None:
    platform = SimPlatform.load(tmp_path)
    SimPcs(platform.files).set_tcb_status(status)
    quote = platform.quote(report_data=b"x", mr_enclave=MRE, mr_signer=MRS)
    verdict = _verifier(platform).verify(quote, SimPcs(platform.files).collateral(), now=int(time.time()))
    assert verdict.status == status
    assert (verdict.advisory_ids == ()) == (status == "UpToDate")
    assert SimPcs.load(tmp_path).tcb_status == status, "the status persists"


def test_debug_quotes_are_refused_unless_allowed(platform: SimPlatform) -> None:
    quote = platform.quote(report_data=b"x", mr_enclave=MRE, mr_signer=MRS, debug=True)
    verifier = _verifier(platform)
    with pytest.raises(AttestationError, match="DEBUG"):
        verifier.verify(quote, SimPcs(platform.files).collateral(), now=int(time.time()))
    assert verifier.verify(
        quote, SimPcs(platform.files).collateral(), now=int(time.time()), allow_debug=True
    ).quote.report.debug


def test_tampered_sim_quote_is_refused(platform: SimPlatform) -> None:
    quote = bytearray(platform.quote(report_data=b"x", mr_enclave=MRE, mr_signer=MRS))
    quote[64 + 48] ^= 1  # inside mr_enclave
    with pytest.raises(AttestationError, match="ISV enclave report signature"):
        _verifier(platform).verify(bytes(quote), SimPcs(platform.files).collateral(), now=int(time.time()))


@pytest.mark.parametrize(("offset", "what"), [(564, "QE report"), (948, "QE report signature")])
def test_a_verified_qe_report_vouches_only_for_its_exact_bytes(platform: SimPlatform, offset: int, what: str) -> None:
    """The QE report's check is remembered per platform; a quote whose QE report or its signature differs by one
    bit from one verified before is still refused."""
    verifier = _verifier(platform)
    good = platform.quote(report_data=b"x", mr_enclave=MRE, mr_signer=MRS)
    verifier.verify(good, SimPcs(platform.files).collateral(), now=int(time.time()))
    quote = bytearray(platform.quote(report_data=b"y", mr_enclave=MRE, mr_signer=MRS))
    assert quote[564:1012] == good[564:1012], "a platform's quotes repeat its QE report and signature"
    quote[offset] ^= 1
    with pytest.raises(AttestationError, match="the QE report signature is invalid"):
        verifier.verify(bytes(quote), SimPcs(platform.files).collateral(), now=int(time.time()))
    assert verifier.verify(good, SimPcs(platform.files).collateral(), now=int(time.time())).root == "sim", what


def test_platform_persists_and_sealing_keys_are_bound_to_identity(platform: SimPlatform) -> None:
    again = SimPlatform.load(platform.directory)
    assert again.files.certs["root"] == platform.files.certs["root"]
    assert again.sealing_key(MRE, MRS) == platform.sealing_key(MRE, MRS)
    assert platform.sealing_key(MRE, MRS) != platform.sealing_key(MRS, MRS)
    assert platform.sealing_key(MRE, MRS, policy="mrsigner") == platform.sealing_key(MRS, MRS, policy="mrsigner")
    attester = platform.attester(mr_enclave=MRE, mr_signer=MRS)
    assert isinstance(attester, SimAttester)
    assert parse_quote(attester.evidence(b"r")).report.report_data[:1] == b"r"
    with pytest.raises(AttestationError, match="at most 64"):
        attester.evidence(b"x" * 65)


def test_gramine_attester_with_a_fake_device_dir(tmp_path: Path, platform: SimPlatform) -> None:
    dev = tmp_path / "attestation"
    dev.mkdir()
    (dev / "attestation_type").write_text("dcap\n")
    quote = platform.quote(report_data=b"g", mr_enclave=MRE, mr_signer=MRS)
    (dev / "quote").write_bytes(quote)
    assert GramineAttester(dev).evidence(b"report") == quote
    assert (dev / "user_report_data").read_bytes() == b"report".ljust(64, b"\0")
    (dev / "attestation_type").write_text("none")
    with pytest.raises(AttestationError, match="not 'dcap'"):
        GramineAttester(dev).evidence(b"report")


def test_occlum_attester_through_the_ioctl_seam(tmp_path: Path, platform: SimPlatform) -> None:
    device = tmp_path / "sgx"
    device.write_bytes(b"")
    quote = platform.quote(report_data=b"o", mr_enclave=MRE, mr_signer=MRS)
    seen: dict[str, bytes] = {}

    def fake_ioctl(fd: int, request: int, arg: object) -> int:
        if request == OCCLUM_GET_QUOTE_SIZE:
            arg.value = len(quote)  # type: ignore[attr-defined]
        elif request == OCCLUM_GEN_QUOTE:
            seen["report_data"] = ctypes.string_at(arg.report_data, 64)  # type: ignore[attr-defined]
            ctypes.memmove(arg.quote_buf, quote, len(quote))  # type: ignore[attr-defined]
        else:
            raise OSError(22, "bad ioctl")
        return 0

    assert OcclumAttester(device, ioctl=fake_ioctl).evidence(b"occlum") == quote
    assert seen["report_data"] == b"occlum".ljust(64, b"\0")


def test_detect_prefers_real_sgx_and_needs_permission_for_sim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(AttestationError, match="no SGX device"):
        detect(dev=tmp_path)
    monkeypatch.setenv("SEALPOD_STATE_DIR", str(tmp_path / "state"))
    assert isinstance(detect(dev=tmp_path, allow_sim=True), SimAttester)
    (tmp_path / "sgx").write_bytes(b"")
    assert isinstance(detect(dev=tmp_path, allow_sim=True), OcclumAttester)
    (tmp_path / "attestation").mkdir()
    (tmp_path / "attestation" / "quote").write_bytes(b"")
    assert isinstance(detect(dev=tmp_path), GramineAttester)


def test_a_damaged_platform_is_refused_naming_its_directory(platform: SimPlatform, tmp_path: Path) -> None:
    # the enclave's attester copies the platform's certificates into its quotes without parsing them: a file that
    # is no PEM certificate must still be refused when the platform loads, not copied into evidence
    copy = tmp_path / "sim-sgx"
    shutil.copytree(platform.directory, copy)
    (copy / "pck.pem").write_bytes(b"not a certificate\n")
    with pytest.raises(AttestationError, match=f"the simulated SGX platform in {copy} is damaged"):
        SimPlatform.load(copy)
