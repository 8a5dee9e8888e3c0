"""``tritonfast perf``: throughput and latency of a Triton model through tritonfast,
with perf_analyzer's options, stability rule and CSV format.

Run ``tritonfast perf --help`` (or ``python -m tritonfast.perf --help``).
Modules: ``cli`` (options, exit status), ``server`` (readiness, config,
statistics), ``data`` (input tensors), ``clients`` (tritonfast and
tritonclient behind one interface), ``load`` (closed and open loops),
``measure`` (windows, stability), ``report`` (table, CSV, JSON).
"""
