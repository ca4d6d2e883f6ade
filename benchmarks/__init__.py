"""基准 Benchmark programs behind scripts/bench_* (they print figures; tests never assert times).

Not shipped: they live beside the packages. Run from the repository root, e.g.
``python -m benchmarks.imports --patients 2000 --followups 8000``. Their scratch databases come
from one helper, ``benchmarks.scratch``.
"""
