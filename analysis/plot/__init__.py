"""Pictures: handler styles' colours (styles), plot functions drawing on a given axes (plots,
mechanism, and one module per section chart that needs its own: probe, capacity, stalls, clients,
servers, databases; the threadpool and abandon sections draw theirs in their own modules, with
mechanism's functions and matplotlib's), and the per-scenario charts of a run as PNG files
(charts), whose `save_chart` writes every section's chart."""
