"""ocicrypt-compatible image layer encryption: the layer cipher, its options and annotations, and key wrappers."""
