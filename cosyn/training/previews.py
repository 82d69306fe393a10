"""Preview grids during training: real | generated image | label | instances, fixed layouts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from cosyn.core.layout import Layout
from cosyn.core.visual import draw_points, grid, instance_contours, label_to_rgb
from cosyn.data.dataset import PreparedTile
from cosyn.io.fileio import atomic_write
from cosyn.model.checkpoint import PipelineConfig
from cosyn.model.denoiser import JointDenoiser
from cosyn.model.pipeline import CoSynPipeline
from cosyn.model.text import TextEncoder

PREVIEW_SIZE = 128


def preview_layouts(
    tiles: Sequence[PreparedTile], config: PipelineConfig, count: int = 3
) -> list[tuple[np.ndarray, Layout]]:
    """The top-left crop of the `count` tiles with most nuclei: fixed for the whole run."""
    stride = config.denoiser.stride
    chosen = sorted(tiles, key=lambda t: (-int((t.points > 0).sum()), t.name))[:count]
    out = []
    for t in chosen:
        size = min(PREVIEW_SIZE, min(t.image.shape[:2]) // stride * stride)
        pts = t.points[:size, :size]
        rows, cols = np.nonzero(pts)
        layout = Layout.from_arrays(size, size, config.classes, np.stack([cols, rows], 1),
                                    pts[rows, cols], mpp=config.mpp, tissue=t.tissue)
        out.append((t.image[:size, :size], layout))
    return out


class PreviewMaker:
    def __init__(self, tiles: Sequence[PreparedTile], config: PipelineConfig, text_encoder: TextEncoder,
                 out_dir: Path) -> None:
        self.layouts = preview_layouts(tiles, config)
        self.config, self.text_encoder, self.out_dir = config, text_encoder, Path(out_dir)

    def render(self, model: JointDenoiser, step: int, steps: int) -> Path:
        pipe = CoSynPipeline(model, self.config, self.text_encoder)
        cs = pipe.class_set
        rows = []
        for real, layout in self.layouts:
            tr = pipe.sample(layout, steps=steps, sampler="ddim", seed=0)[0]
            rows.append([
                draw_points(real, layout.xy(), layout.class_ids(), cs, radius=1.5),
                tr.image,
                label_to_rgb(tr.class_map, cs),
                instance_contours(tr.image, tr.inst_map, tr.inst_classes, cs),
            ])
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"step_{step:07d}.png"
        # the studio shows the newest preview while training runs: never let it see half a PNG
        atomic_write(path, lambda tmp: Image.fromarray(grid(rows)).save(tmp, format="PNG"))
        return path
