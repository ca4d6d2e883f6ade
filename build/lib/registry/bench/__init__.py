"""基准 Benchmark programs behind scripts/bench_* (they print figures; tests never assert times)."""
