"""Aggregation: the study's figures and the tables behind them, from `<out>/similarity.zarr`.

Installed as `crossrep.analysis`; run with `crossrep aggregate JOB`.
"""
