"""``python -m sealpod.enclave``: the enclave program."""

from sealpod.enclave.boot import main

main()
