"""chunkers."""
