"""Doubles used by tests and benchmarks, named as doubles: never used by the product."""
