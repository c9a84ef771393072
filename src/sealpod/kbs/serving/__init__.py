"""How the KBS service is served: the one route table, the Starlette app, the handshake's fast lane and HTTP protocol,
group commit, worker processes with their shared counters, and an embedded KBS for the demo."""
