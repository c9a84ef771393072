"""``python -m sealpod.enclave``: the enclave program."""

from sealpod.enclave.entry import main

main()
