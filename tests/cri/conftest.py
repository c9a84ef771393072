"""The CRI tests use the KBS fixtures and the end-to-end tests' node (a state dir whose simulated platform the KBS
trusts)."""

from tests.e2e.conftest import node  # noqa: F401 - pytest fixtures re-exported for this folder
from tests.kbs.conftest import kbs_factory, sim  # noqa: F401
