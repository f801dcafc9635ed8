"""active component (see docs/active.md)."""
