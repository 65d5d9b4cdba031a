"""Model ladder: the encoding study across model sizes (issue 20)."""
