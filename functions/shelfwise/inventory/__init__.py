"""Products, variants and stock."""
