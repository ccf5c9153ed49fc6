"""Samples, readers, the DataPool and the built-in synthetic stream."""
