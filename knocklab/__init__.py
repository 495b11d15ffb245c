"""Test plumbing, outside the wheel: network-namespace labs and packet generators for the tests,
the benchmarks and the demo. Never imported by knocknft itself.
"""
