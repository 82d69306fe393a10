"""Measured quality: layout fidelity and instance metrics (metrics), realism (FID/KID in realism, the
real-vs-generated classifier test in c2st, texture statistics in texture), the segmenter used for
consistency and downstream gain (segmenter), and the `cosyn evaluate` report (evaluate/)."""
