"""The contract between the untrusted host and the generic enclave: the only sealpod code both sides import.

- :data:`ENCLAVE_MODULE`: the module the host starts as the enclave (``python -m``; under Gramine on SGX);
- :mod:`.request`: :class:`~sealpod.boundary.request.BootRequest`, what the host asks the enclave to run;
- :mod:`.volumes`: :class:`~sealpod.boundary.volumes.VolumeSpec`, a host path the enclave binds into the rootfs;
- :mod:`.channel`: the datagram channel between ``sealpod run`` and a pre-launched enclave.

Nothing in it is secret, and it imports nothing that handles keys: the host side may import it, and the enclave
must treat everything that crosses it as chosen by the host.
"""

#: The enclave program's module (``python -m sealpod.enclave``).
ENCLAVE_MODULE = "sealpod.enclave"

#: The interpreter's flags when the host starts the enclave program: isolated (``-I``: no ``PYTHON*`` variable, no
#: user site, not the working directory on the module path). The host chooses the enclave's environment; it must
#: not thereby choose code for it (``PYTHONPATH`` with a ``sitecustomize`` would run first in every enclave).
ENCLAVE_PYTHON_FLAGS = ("-I",)
