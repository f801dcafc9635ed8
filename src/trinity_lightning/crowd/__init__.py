"""crowd component (see docs/crowd.md)."""
