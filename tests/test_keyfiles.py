"""Keys sealpod makes for itself: made once, 0600, and one key when several processes make it at once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from sealpod._internal.keyfiles import OwnKey, load_or_create_key


def test_concurrent_makers_agree_on_one_whole_key(tmp_path: Path) -> None:
    path = tmp_path / "state" / "key.pem"
    start = threading.Barrier(6)
    results: list[object] = []

    def slow_generate() -> OwnKey:
        start.wait()  # every maker saw no file and generates its own key
        key = ec.generate_private_key(ec.SECP256R1())
        time.sleep(0.05)
        return key

    def make() -> None:
        key = load_or_create_key(path, slow_generate)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        results.append(key.public_key().public_numbers())

    threads = [threading.Thread(target=make) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 6
    assert all(numbers == results[0] for numbers in results)  # the key in the file, for every caller
    assert (path.stat().st_mode & 0o777) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["key.pem"]  # no temporary file left
    again = load_or_create_key(path, slow_generate)  # loaded, not made: the barrier would block a new maker
    assert isinstance(again, ec.EllipticCurvePrivateKey)
    assert again.public_key().public_numbers() == results[0]
