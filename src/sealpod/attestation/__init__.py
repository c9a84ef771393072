"""The relying side of remote attestation: evidence verifiers (one folder per TEE), tokens and policies."""
