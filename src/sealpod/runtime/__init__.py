"""The host side: launching an enclave for an image. Never imports anything that handles keys or plaintext."""
