"""One module per report section, each a function from the run's tiles to the section's JSON-ready
dict: fidelity, consistency, realism (extensible through its METRICS list), downstream, speed.

The functions are exported by cosyn.evaluation.evaluate, not here: a package attribute named like
one of these modules would be replaced by the module itself on its first import.
"""
