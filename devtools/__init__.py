"""Development doubles, not part of the product: the government-service platform simulator
and the synthetic legacy export (for the bridge's and the migration's tests and benchmarks)."""
