"""Profiling jobs: one per (supernet, device), leased by agents with heartbeats."""
