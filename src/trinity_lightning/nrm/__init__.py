"""nrm component (see docs/nrm.md)."""
