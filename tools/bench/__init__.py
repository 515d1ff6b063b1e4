"""Helpers of `tools/bench.py` (the tenant-scale benchmark). Never shipped, never imported by the app.

Processes, so that every figure is charged to the side that spends it:

    tools/bench.py (orchestrator: generates data, starts services, reads rusage of its children)
      ├─ bench.engine      the local Log Analytics query API (duckdb-kql), wrapped to count bytes/time
      ├─ devstack.identity the managed-identity endpoint
      ├─ devstack.teams_sink the Teams Workflows webhook sink
      ├─ azurite-table     Table Storage (node)
      └─ bench.tick_child  the function: imports function_app, runs one tick through the timer function
"""
