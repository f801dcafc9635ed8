"""tensor component (see docs/tensor.md)."""
