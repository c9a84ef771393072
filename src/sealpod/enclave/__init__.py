"""The generic enclave: its measured manifest, the encrypted rootfs, the sandbox, boot."""
