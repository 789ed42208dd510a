"""Benchmarks: our engine against stock llama-cpp-python on the same files, in one run (see README)."""
