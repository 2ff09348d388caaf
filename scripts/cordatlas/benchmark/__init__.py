"""Benchmark: the workflow against the plain scanpy script a user writes, at growing sizes."""
