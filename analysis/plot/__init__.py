"""Pictures: handler styles' names and colours (styles), plot functions drawing on a given axes
(plots, mechanism) and the rendering of every chart of a run to PNG files (charts)."""
