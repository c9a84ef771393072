"""Key wrappers: how a layer's private options are protected for each recipient (JWE, keyprovider, CoCo KBS)."""
