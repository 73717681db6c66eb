"""Pictures: handler styles' colours (styles), plot functions drawing on a given axes (plots,
mechanism, and one module per section's chart: capacity, stalls, clients, databases) and the
per-scenario charts of a run as PNG files (charts)."""
