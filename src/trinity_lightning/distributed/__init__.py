"""distributed component (see docs/distributed.md)."""
