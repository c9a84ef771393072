"""``python -m sealpod.enclave``: the enclave program."""

import sys
import types

# httpx imports its command-line tool (and with it click, rich and pygments: ~30 ms of every enclave start) whenever
# those are installed; the enclave never uses it, and httpx falls back to a stub when the import fails
sys.modules.setdefault("httpx._main", types.ModuleType("httpx._main"))

from sealpod.enclave.entry import main  # noqa: E402

main()
