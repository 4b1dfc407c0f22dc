"""Business rules as plain functions and values.

Nothing in this package imports Faust, Kafka clients or aiohttp (a test
checks), so the rules are unit-tested directly and reused by the agents,
the reconciliation tool and the benchmarks.
"""
