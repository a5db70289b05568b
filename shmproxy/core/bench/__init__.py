"""Benchmarks shipped with the package, so ``benchmarks/`` scripts and ``shmproxy bench`` share them."""
