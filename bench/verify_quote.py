"""Benchmark: SGX DCAP quote verifications per second, sealpod against dcap-qvl (PyPI), in the same process.

A real quote with its Intel collateral (tests/data/sgx: the phala case) is verified at its `verify_at` time, the
same way on both sides: sealpod's DcapVerifier (which caches verified collateral and PCK chains by their bytes)
and `dcap_qvl.verify(quote, QuoteCollateralV3, now)` (which parses everything on each call). Also timed: one cold
verification (a new verifier, nothing cached). Targets (issue 19): at least 7x dcap-qvl's rate warm; cold no
slower than it.

    .venv/bin/python bench/verify_quote.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import dcap_qvl

from sealpod.attestation.sgx.collateral import Collateral
from sealpod.attestation.sgx.verify import DcapVerifier

DATA = Path(__file__).parent / "data"
VERIFY_AT = 1751624924


def rate(fn: object, seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds``."""
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(20):
            fn()  # type: ignore[operator]
        count += 20
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    quote = (DATA / "phala_dcapqvl_sgx_quote.bin").read_bytes()
    text = (DATA / "00A067110000_processor_20250619.json").read_text()
    collateral = Collateral.from_qvl_json(text)
    qvl_collateral = dcap_qvl.QuoteCollateralV3.from_json(text)
    verifier = DcapVerifier()
    ours = verifier.verify(quote, collateral, now=VERIFY_AT)
    theirs = dcap_qvl.verify(quote, qvl_collateral, VERIFY_AT)
    assert ours.status == theirs.status, (ours.status, theirs.status)

    ours_rate = rate(lambda: verifier.verify(quote, collateral, now=VERIFY_AT), args.seconds)
    theirs_rate = rate(lambda: dcap_qvl.verify(quote, qvl_collateral, VERIFY_AT), args.seconds)
    cold = []
    for _ in range(30):
        start = time.perf_counter()
        DcapVerifier().verify(quote, Collateral.from_qvl_json(text), now=VERIFY_AT)
        cold.append(time.perf_counter() - start)
    qvl_cold = []
    for _ in range(30):
        start = time.perf_counter()
        dcap_qvl.verify(quote, dcap_qvl.QuoteCollateralV3.from_json(text), VERIFY_AT)
        qvl_cold.append(time.perf_counter() - start)
    print(f"verdict (both): {ours.status}")
    print(f"sealpod (warm caches): {ours_rate:8.0f} verifications/s")
    print(f"dcap-qvl 0.7.0:        {theirs_rate:8.0f} verifications/s")
    print(f"ratio sealpod / dcap-qvl: {ours_rate / theirs_rate:.2f}x (target >= 7x)")
    print(
        f"cold verification (parse collateral, nothing cached): sealpod {statistics.median(cold) * 1000:.2f} ms, "
        f"dcap-qvl {statistics.median(qvl_cold) * 1000:.2f} ms (target: <= dcap-qvl's)"
    )


if __name__ == "__main__":
    main()
