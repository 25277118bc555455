"""Benchmarks for ``make bench``; ``benchmarks.run`` writes docs/benchmarks.md.

Every load is sent to 127.0.0.1 only, and every loop is bounded in count and in time.
"""
