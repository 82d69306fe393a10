"""Stain matching: what a stain is measured on, how an output is moved to a reference stain, and the paths
that ask for it (the pipeline, `cosyn augment --match-stain`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import disc_sample
from PIL import Image

from cosyn.augment import AugmentConfig, AugmentError, SamplingSettings, augment, read_meta, read_samples, source_stains
from cosyn.core.layout import Layout, Point
from cosyn.data.formats import read_dataset, write_dataset
from cosyn.stages.base import STAIN_PARAM
from cosyn.stages.texture import TextureStage, bank_from_samples
from cosyn.stages.texture.stain import Stain, lab_of, toward

PINK, LILAC = (225, 150, 190), (190, 170, 215)


def tissue(colour: tuple[int, int, int], seed: int, size: int = 64, white_rows: int = 0) -> np.ndarray:
    """Textured tissue of `colour` (noise sd 12), its first `white_rows` rows unstained white."""
    rng = np.random.default_rng(seed)
    image = np.clip(np.array(colour) + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
    image[:white_rows] = 255
    return image


def stained_lab(image: np.ndarray) -> np.ndarray:
    px = image.reshape(-1, 3)
    return lab_of(px[px.min(1) <= 200][None]).reshape(-1, 3)


def test_a_stain_is_measured_on_stained_pixels_only() -> None:
    half_white = tissue(PINK, 0, white_rows=32)
    assert np.allclose(Stain.of([half_white]).mean, Stain.of([half_white[32:]]).mean, atol=0.01)
    # a pale stain is not a mostly empty tile: the white half leaves L* where the tissue has it
    assert Stain.of([half_white]).mean[0] < 75
    with pytest.raises(ValueError, match="stained pixels"):
        Stain.of([np.full((32, 32, 3), 250, np.uint8)])


@pytest.mark.parametrize("bad", [{"mean": [70, 20, float("nan")], "spread": [10, 5, 5]},
                                 {"mean": [70, 20, -10], "spread": [10, 0, 5]},
                                 {"mean": [70, 20], "spread": [10, 5, 5]},
                                 {"mean": [70, 20, -10]}, "pink"])
def test_a_stain_refuses_what_is_not_one(bad) -> None:
    with pytest.raises(ValueError):
        Stain.from_dict(bad)


def test_an_image_moves_to_the_reference_stain_and_its_white_stays_white() -> None:
    image = tissue(PINK, 1, white_rows=16)
    reference = Stain.of([tissue(LILAC, 2)])
    out = toward(image, Stain.of([image]), reference)
    moved = stained_lab(out)
    assert np.abs(moved.mean(0) - np.array(reference.mean)).max() < 1.5  # the mean moves in full
    assert np.abs(stained_lab(image).mean(0) - np.array(reference.mean)).max() > 10  # it had far to go
    assert (out[:16] == 255).all()  # unstained pixels are left as they were
    # a spread never widens (a stretched channel turns white regions green), whatever the reference's
    wide = Stain(reference.mean, tuple(3 * s for s in reference.spread))
    assert (stained_lab(toward(image, Stain.of([image]), wide)).std(0) <= stained_lab(image).std(0) + 0.5).all()


def test_the_pipeline_refuses_a_stain_its_second_stage_cannot_apply(pipe) -> None:
    layout = Layout(64, 64, list(pipe.class_set.names), [Point(20, 20, "epithelial")], mpp=0.25)
    with pytest.raises(ValueError, match="stain reference is applied by the texture stage.*upsampler"):
        pipe.sample(layout, steps=2, seed=0, stain=Stain.of([tissue(LILAC, 3)]))


def tinted_dataset(path: Path) -> Path:
    """Two source slides of disc tiles, one pink and one lilac: their stains differ as two labs' would."""
    samples = []
    for s, colour in enumerate((PINK, LILAC)):
        for k in range(3):
            sample = disc_sample(n=10, size=(64, 64), radius=4, name=f"s{s}_{k:03d}", seed=10 * s + k)
            nuclei = sample.inst_map > 0
            sample.image = np.where(nuclei[..., None], sample.image, tissue(colour, 10 * s + k))
            samples.append(sample)
    write_dataset(samples, path, "folder")
    return path


def test_augment_matches_each_tile_to_its_source_slides_stain(pipe, tmp_path, monkeypatch) -> None:
    data = tinted_dataset(tmp_path / "tinted")
    real = read_dataset(data, "folder")
    # a texture stage whose bank is one of the slides only: every output is quilted from pink tissue
    bank = bank_from_samples([s for s in real if s.source == "s0"], list(pipe.class_set.names), "test tiles")
    monkeypatch.setattr(pipe, "second_stage", TextureStage(bank))
    out = tmp_path / "syn"
    cfg = AugmentConfig(checkpoint="unused", data=str(data), out=str(out), n=6, split="all",
                        sampling=SamplingSettings(steps=2, guidance=2.0), match_stain=True)
    augment(cfg, pipe=pipe, rank=0, world=1, progress=False)
    assert json.loads((out / "generation.json").read_text())["match_stain"] is True
    stains = source_stains(read_samples(data), data)
    for s in read_dataset(out, "folder"):
        source = s.source.removeprefix("synthetic-")
        assert read_meta(out, s.name)["params"][STAIN_PARAM] == stains[source].to_dict()  # recorded with the tile
        mean = stained_lab(s.image).mean(0)
        # in its own slide's stain, nearer it than the other slide's, though its pixels came from slide s0
        other = stains["s1" if source == "s0" else "s0"]
        assert np.linalg.norm(mean - stains[source].mean) < np.linalg.norm(mean - other.mean)


def test_sample_names_a_stain_reference_it_cannot_read(tmp_path) -> None:
    from test_cli import _run
    from tiny import tiny_pipeline

    tiny_pipeline().save_pretrained(tmp_path / "ck")
    layout = Path(__file__).resolve().parents[1] / "assets" / "layouts" / "colon_mixed_stroma.json"
    (tmp_path / "not_an_image.png").write_text("hello")
    Image.fromarray(np.full((32, 32, 3), 255, np.uint8)).save(tmp_path / "white.png")
    for reference, problem in (("not_an_image.png", "not_an_image.png: cannot read a stain reference image"),
                               ("white.png", "white.png: too few stained pixels")):
        out = _run("sample", "--checkpoint", str(tmp_path / "ck"), "--layout", str(layout),
                   "--out", str(tmp_path / "o"), "--stain-reference", str(tmp_path / reference))
        assert out.returncode == 2 and "Traceback" not in out.stderr
        assert problem in out.stderr
        assert not (tmp_path / "o").exists()


def test_augment_refuses_match_stain_before_sampling_when_its_stage_cannot_apply_it(pipe, data, tmp_path) -> None:
    out = tmp_path / "syn"
    cfg = AugmentConfig(checkpoint="unused", data=str(data), out=str(out), n=2,
                        sampling=SamplingSettings(steps=2, guidance=2.0), match_stain=True)
    with pytest.raises(AugmentError, match="--match-stain: a stain reference is applied by the texture stage, "
                                           "and the upsampler stage"):
        augment(cfg, pipe=pipe, rank=0, world=1, progress=False)
    assert not (out / "images").exists() or not any((out / "images").iterdir())  # refused before any tile


def test_a_source_slide_without_stained_pixels_is_named(tmp_path) -> None:
    blank = disc_sample(n=4, size=(32, 32), name="fat_000")
    blank.image[:] = 255  # nothing stained: no stain to match
    write_dataset([disc_sample(n=4, size=(32, 32), name="s0_000"), blank], tmp_path / "d", "folder")
    with pytest.raises(AugmentError, match="source slide 'fat': too few stained pixels"):
        source_stains(read_samples(tmp_path / "d"), tmp_path / "d")
