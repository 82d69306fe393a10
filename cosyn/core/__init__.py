"""The vocabulary every other package speaks: nucleus classes, the layout a user draws, the
image/label/instance triple the model returns, and the resampling and drawing they share.

Nothing here imports from the rest of cosyn.
"""

from cosyn._lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "ClassSet": "classes", "CONSEP": "classes", "PANNUKE": "classes", "CONIC": "classes",
    "Layout": "layout", "LayoutError": "layout", "Point": "layout",
    "Triple": "triple",
    "at_mpp": "resample", "resample_image": "resample", "resample_labels": "resample",
    "resample_distance": "resample", "resample_instances": "resample",
    "cut_instances": "instances", "instance_table": "instances", "paint_classes": "instances",
    "point_map": "maps", "distance_map": "maps",
    "label_to_rgb": "visual", "instance_contours": "visual", "draw_points": "visual", "grid": "visual",
})
