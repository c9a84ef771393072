"""OCI images: references, manifests and configs, the distribution client, layout dirs and layer unpacking."""
