"""Datasets: a reader and writer for every supported format (formats/), the Sample they share (sample),
layouts and prompts derived from it (targets), the training Dataset (dataset) and `cosyn prepare`
(prepare, report). Import from the modules."""
