"""Simulation engines: ``mc`` (vectorized Monte Carlo over paths) and ``des`` (simpy, inside peak periods)."""
