"""The profiles domain."""
