"""The vocabulary every other package speaks, as plain arrays and dataclasses; imports nothing else from cosyn.

- classes: ClassSet and the datasets' class lists; layout: Layout, Point, LayoutError
- triple: Triple, one image / label / instance / distance result
- instances: instance tables and the point-guided instance cut; maps: point and distance maps
- resample: one resampling rule per map kind, and `at_mpp` for triples; visual: overlays and grids

Import from the modules (`from cosyn.core.layout import Layout`): a package face would load them all.
"""
