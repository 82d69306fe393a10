"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cosyn.core.classes import CONSEP, ClassSet
from cosyn.data.sample import Sample

# The real CoNSeP patches beside the checkout (CI always has them); tests that need them skip without.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "consep_patched"


def disc_sample(
    n: int = 12,
    size: tuple[int, int] = (64, 80),
    classes: ClassSet = CONSEP,
    radius: int = 4,
    first_id: int = 10,
    id_step: int = 7,
    name: str = "tile_000",
    source: str | None = None,
    seed: int = 0,
) -> Sample:
    """`n` non-overlapping discs on a grid, one instance each, in a (height, width) = `size` tile.

    Disc k has id `first_id + k * id_step` (non-contiguous on purpose), class
    `1 + k % (num_classes - 1)`, and its centre on a pixel, so the centroid (x, y) is exactly
    that pixel: a symmetric disc's mask mean is its centre. The image is textured noise with
    darker nuclei, so lossy or shifted writes would show.
    """
    height, width = size
    cell = 2 * radius + 3
    rows, cols = height // cell, width // cell
    if n > rows * cols:
        raise ValueError(f"{n} discs of radius {radius} do not fit in {size}")
    rng = np.random.default_rng(seed)
    image = rng.integers(170, 250, (height, width, 3), dtype=np.uint8)
    inst_map = np.zeros(size, np.int32)
    class_map = np.zeros(size, np.uint8)
    yy, xx = np.indices(size)
    ids, centroids, inst_classes = [], [], []
    for k in range(n):
        cy, cx = (k // cols) * cell + cell // 2, (k % cols) * cell + cell // 2
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        inst_id, cls = first_id + k * id_step, 1 + k % (classes.num_classes - 1)
        inst_map[disc] = inst_id
        class_map[disc] = cls
        image[disc] = rng.integers(60, 140, (int(disc.sum()), 3), dtype=np.uint8)
        ids.append(inst_id)
        centroids.append((cx, cy))
        inst_classes.append(cls)
    return Sample(
        name=name,
        image=image,
        inst_map=inst_map,
        class_map=class_map,
        inst_ids=np.array(ids, np.int32),
        centroids=np.array(centroids, np.float64).reshape(-1, 2),
        inst_classes=np.array(inst_classes, np.int32),
        classes=classes,
        tissue="colon",
        mpp=0.25,
        source=source if source is not None else name.rsplit("_", 1)[0],
    )


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tests use tiny models, which one thread runs as fast as two; two OpenMP teams on 2 busy
    cores (a subprocess or a training run beside the tests) run up to 30x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def make_disc_sample() -> Callable[..., Sample]:
    """Factory: `make_disc_sample(n=..., size=..., classes=..., name=...)`, see `disc_sample`."""
    return disc_sample


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny random-weight checkpoint folder."""
    from tiny import tiny_pipeline

    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    tiny_pipeline().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def pipe(checkpoint):
    from tiny import text_encoder

    from cosyn.model.pipeline import CoSynPipeline

    return CoSynPipeline.from_pretrained(checkpoint, text_encoder=text_encoder())


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """4 sources x 2 tiles of 64² at 0.25 µm/px; the 0.15 validation split holds one source (2 tiles)."""
    from cosyn.data.formats import write_dataset

    path = tmp_path_factory.mktemp("data") / "discs"
    samples = [disc_sample(n=8 + k, size=(64, 64), radius=5, name=f"s{s}_{k:03d}", seed=10 * s + k)
               for s in range(4) for k in range(2)]
    write_dataset(samples, path, "folder")
    return path
