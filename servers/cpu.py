"""Deterministic pure-Python CPU work for the CPU-bound endpoint."""

# Loop iterations that take about 1 ms of CPU on the reference machine (2-core, Python 3.11);
# kept fixed rather than calibrated at start so every run and variant does identical work.
ITERATIONS_PER_MS = 10_000


def burn(n_ms: int) -> int:
    """Spend about `n_ms` milliseconds of CPU and return a checksum that depends on every step."""
    acc = 0
    for i in range(n_ms * ITERATIONS_PER_MS):
        acc = (acc * 31 + i) & 0xFFFFFFFF
    return acc
