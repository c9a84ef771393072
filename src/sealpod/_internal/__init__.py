"""Helpers shared by sealpod's packages (JSON and JOSE primitives, TLS contexts, child processes, key files,
cgroups). Private: nothing outside sealpod should import them, and they import nothing of sealpod but ``errors``."""
