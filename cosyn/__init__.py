"""CoSyn Studio: co-synthesis of H&E nuclei image / label / instance triples."""

__version__ = "0.1.0"
