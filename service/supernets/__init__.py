"""The supernets domain."""
