"""The end-to-end tests use the KBS fixtures, and a node: a state dir whose simulated platform the KBS trusts."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealpod.tee.sim import SimPlatform
from tests.e2e.pool import Pool
from tests.kbs.conftest import kbs_factory, sim  # noqa: F401 - pytest fixtures re-exported for this folder


@pytest.fixture
def node(tmp_path: Path, sim: SimPlatform) -> dict[str, str]:  # noqa: F811 - the sim fixture, used for its effect
    """The node's environment: its own state dir whose simulated platform is the one the KBS trusts."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "sim-sgx").symlink_to(tmp_path / "sim")
    return {**os.environ, "SEALPOD_STATE_DIR": str(state)}


@pytest.fixture
def pool(node: dict[str, str], tmp_path: Path) -> Iterator[Pool]:
    """``sealpod node enclave-pool --size 1`` on the node's state dir, stopped after the test."""
    running = Pool(node, tmp_path / "pool.log")
    try:
        yield running
    finally:
        running.stop()
