"""Datasets: MNIST fetched and verified (`mnist`), any other image dataset from local files (`datasets`), and
their statistics in float64 (`statistics`).
"""
