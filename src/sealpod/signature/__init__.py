"""Image signatures: containers-policy.json, signed identities, sigstore (cosign) and GPG simple signing,
registries.d. Reads signatures through stores the caller passes in; never fetches on its own initiative."""
