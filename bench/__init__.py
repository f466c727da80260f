"""Benchmarks of the promises in ../shared/PRODUCT.md ("Speed we promise"), each with its baseline in the same run."""
