"""Everything that reads the outside world into the canonical schema."""
