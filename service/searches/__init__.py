"""Searches: exact Pareto fronts per (supernet, cost table, options), answered from storage."""
