"""Helpers only tests and benchmarks use: synthetic captures, ASCONF traces read back."""
