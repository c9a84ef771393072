"""The key broker service (trustee's KBS protocol 0.4.0), its storage and admin API, and the RCAR client."""
