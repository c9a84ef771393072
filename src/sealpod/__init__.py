"""sealpod: process-based confidential containers."""

__version__ = "0.1.0"
