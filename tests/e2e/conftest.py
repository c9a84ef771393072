"""The end-to-end tests use the KBS fixtures."""

from tests.kbs.conftest import kbs_factory, sim  # noqa: F401 - pytest fixtures re-exported for this folder
