"""The KBS service: the handshake's steps and the admin operations (:mod:`.kbs`), admin authentication, challenges,
per-process caches, and the store (:mod:`.storage`, one class per backend behind one interface)."""
