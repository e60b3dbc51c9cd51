"""What only tests and benchmarks use: fake runtimes and backends, synthetic captures,
ASCONF traces read back."""
