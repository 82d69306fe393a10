"""The texture stage: its bank on disk, the quilt's seams, and the promise that every requested centroid
becomes a real nucleus of its class whose pixels are exactly its label."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED_DATA

from cosyn.core.layout import Layout, Point
from cosyn.core.triple import Triple
from cosyn.stages.base import STAIN_PARAM, SecondStage, StageContext
from cosyn.stages.texture import (
    BankError,
    TextureBank,
    TextureSettings,
    TextureStage,
    bank_from_samples,
    largest_copy,
    load,
    load_bank,
    save_bank,
)
from cosyn.stages.texture import bank as bank_module
from cosyn.stages.texture.bank import BankTile
from cosyn.stages.texture.nuclei import nuclei_of
from cosyn.stages.texture.paste import targets_from_base
from cosyn.stages.texture.quilt import min_cut, seam_mask
from cosyn.stages.texture.stain import Stain

CLASSES = ["background", "other", "inflammatory", "epithelial", "spindle"]
PINK, PURPLE = np.array([235, 185, 205]), np.array([80, 50, 130])


def synthetic_tile(rng: np.random.Generator, name: str, source: str, size: int = 96) -> BankTile:
    """Pink tissue with fine texture and dark purple elliptic nuclei of every class, annotated exactly."""
    noise = cv2.GaussianBlur(rng.normal(0, 12, (size, size, 3)).astype(np.float32), (0, 0), 1.0)
    image = PINK + noise
    inst = np.zeros((size, size), np.int32)
    classes = {}
    for i in range(1, 41):  # dense, as epithelium: the quilt cannot avoid carrying nuclei along
        cx, cy = rng.integers(8, size - 8, 2)
        axes = (int(rng.integers(3, 7)), int(rng.integers(2, 4)))
        mask = cv2.ellipse(np.zeros((size, size), np.uint8), (int(cx), int(cy)), axes, float(rng.uniform(0, 180)),
                           0, 360, 1, -1).astype(bool) & (inst == 0)
        inst[mask] = i
        classes[i] = 1 + (i % 4)
    image[inst > 0] = PURPLE + noise[inst > 0]
    return BankTile(name, source, np.clip(image, 0, 255).astype(np.uint8), inst, classes)


@pytest.fixture(scope="module")
def bank_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    tiles = [synthetic_tile(rng, f"t{i}", f"slide{i % 2}") for i in range(6)]
    path = tmp_path_factory.mktemp("bank") / "texture_bank.safetensors"
    save_bank(TextureBank(tiles, 0.25, CLASSES, "synthetic test tiles"), path)
    return path


@pytest.fixture(scope="module")
def stage(bank_file: Path) -> TextureStage:
    return TextureStage(load_bank(bank_file), bank_path=bank_file)


def base_triple(points: list[tuple[float, float, str]], size: int = 48) -> Triple:
    """A base triple at 0.5 µm/px with a round blob under each point, as the base model draws them."""
    layout = Layout(size, size, CLASSES, [Point(x, y, c) for x, y, c in points], mpp=0.5, tissue="colon")
    inst = np.zeros((size, size), np.int32)
    for k, (x, y, _) in enumerate(points, start=1):
        cv2.circle(inst, (int(x), int(y)), 3, k, -1)
    classes = {k: CLASSES.index(c) for k, (_, _, c) in enumerate(points, start=1)}
    class_map = np.vectorize(lambda i: classes.get(i, 0))(inst).astype(np.uint8)
    image = np.full((size, size, 3), 200, np.uint8)
    image[inst > 0] = 90
    return Triple(image, class_map, inst, (inst > 0).astype(np.float32), classes, layout, {"model_mpp": 0.5})


POINTS = [(10.0, 12.0, "epithelial"), (30.0, 10.0, "inflammatory"), (20.0, 30.0, "spindle"), (38.0, 38.0, "other"),
          (8.0, 40.0, "epithelial")]


def test_bank_round_trip_keeps_annotations_exactly(bank_file: Path) -> None:
    bank = load_bank(bank_file)
    again = [synthetic_tile(np.random.default_rng(0), "x", "y")]  # the first tile, regenerated
    assert [t.name for t in bank.tiles] == [f"t{i}" for i in range(6)]
    assert bank.sources() == ["slide0", "slide1"] and bank.mpp == 0.25 and bank.classes == CLASSES
    assert bank.provenance == "synthetic test tiles"
    np.testing.assert_array_equal(bank.tiles[0].inst_map, again[0].inst_map)
    assert bank.tiles[0].inst_classes == again[0].inst_classes
    assert np.abs(bank.tiles[0].image.astype(int) - again[0].image).mean() < 5  # JPEG q95 of per-pixel noise
    stored, computed = bank.catalogue().to_arrays(), nuclei_of(bank.tiles).to_arrays()
    assert stored.keys() == computed.keys() and len(stored["cls"]) > 0
    for k in set(stored) - {"ring"}:
        np.testing.assert_allclose(stored[k], computed[k], rtol=1e-5)
    assert np.abs(stored["ring"] - computed["ring"]).mean() < 5  # its colour was taken before the JPEG round trip


def test_bank_errors_name_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(BankError, match="junk.safetensors"):
        load_bank(junk)
    with pytest.raises(BankError, match="missing"):
        load_bank(tmp_path / "absent.safetensors")
    monkeypatch.setattr(bank_module, "MAX_BANK_BYTES", 1000)
    tile = synthetic_tile(np.random.default_rng(1), "t", "s")
    with pytest.raises(BankError, match="over the"):
        save_bank(TextureBank([tile], 0.25, CLASSES), tmp_path / "big.safetensors")
    assert not (tmp_path / "big.safetensors").exists()


def test_every_centroid_becomes_a_nucleus_of_its_class(stage: TextureStage) -> None:
    out = stage.to_mpp(base_triple(POINTS), 0.25, seed=3)
    assert out.image.shape == (96, 96, 3) and out.layout.mpp == 0.25 and out.params["stages"] == ["base", "texture"]
    for k, (x, y, cls) in enumerate(POINTS, start=1):
        assert out.inst_map[int(2 * y), int(2 * x)] == k, f"point {k} is not inside its own nucleus"
        assert out.inst_classes[k] == CLASSES.index(cls)
    assert out.params["missed_centroids"] == 0
    painted = np.vectorize(lambda i: out.inst_classes.get(i, 0))(out.inst_map)
    np.testing.assert_array_equal(out.class_map, painted)
    np.testing.assert_array_equal(out.dist_map > 0, out.inst_map > 0)


def test_labels_and_image_agree(stage: TextureStage) -> None:
    """Nucleus pixels are the bank's dark nuclei; outside the labels, no nucleus colour survives (the quilt's
    own nuclei are filled with nucleus-free tissue)."""
    out = stage.to_mpp(base_triple(POINTS), 0.25, seed=4)
    darkness = out.image.astype(np.float32).mean(-1)
    nucleus = out.inst_map > 0
    near = cv2.dilate(nucleus.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    assert darkness[nucleus].mean() < darkness[~near].mean() - 60
    stray = (darkness < (PURPLE.mean() + PINK.mean()) / 2) & ~near
    assert stray.mean() < 0.01, f"{stray.mean():.3f} of the background looks like nucleus"


def test_same_seed_same_triple_other_seed_other_tissue(stage: TextureStage) -> None:
    a, b = (stage.to_mpp(base_triple(POINTS), 0.25, seed=7) for _ in range(2))
    np.testing.assert_array_equal(a.image, b.image)
    c = stage.to_mpp(base_triple(POINTS), 0.25, seed=8)
    assert not np.array_equal(a.image, c.image)


def test_a_requested_stain_recolours_the_tissue_and_changes_no_label(stage: TextureStage) -> None:
    """The stain is applied to the finished composition: same seed, same nuclei and labels, other colours. The
    output moves by the gap between its slide's stain and the reference, so its own mix of nuclei and tissue keeps
    it near the reference, not on it."""
    reference = Stain.of([np.clip(np.array([190, 170, 215]) + np.random.default_rng(0).normal(0, 10, (32, 32, 3)),
                                  0, 255).astype(np.uint8)])
    plain = stage.to_mpp(base_triple(POINTS), 0.25, seed=5)
    asked = base_triple(POINTS)
    asked.params[STAIN_PARAM] = reference.to_dict()
    stained = stage.to_mpp(asked, 0.25, seed=5)
    np.testing.assert_array_equal(stained.inst_map, plain.inst_map)
    assert stained.inst_classes == plain.inst_classes
    assert stained.params[STAIN_PARAM] == reference.to_dict()  # the triple says which stain it was made in
    before, after = (np.abs(np.array(Stain.of([t.image]).mean) - reference.mean).max() for t in (plain, stained))
    assert after < before / 3, (before, after)


def test_an_output_is_stained_like_a_slide_drawn_at_random_not_like_the_slide_of_its_texture() -> None:
    """The texture comes from the slide that suits the layout (here always the same one), the stain from any
    slide of the bank: over seeds, the outputs come in both slides' stains (before, all 12 in the texture's)."""
    rng = np.random.default_rng(1)
    pink = [synthetic_tile(rng, f"p{i}", "pink") for i in range(3)]
    lilac = [BankTile(f"l{i}", "lilac", np.clip(t.image.astype(int) + [-40, -25, 20], 0, 255).astype(np.uint8),
                      t.inst_map, t.inst_classes) for i, t in enumerate(pink)]
    stage = TextureStage(TextureBank(pink + lilac, 0.25, CLASSES, "synthetic test tiles"), TextureSettings(slides=1))
    stains = {name: np.array(Stain.of([t.image for t in tiles]).mean) for name, tiles in (("pink", pink),
                                                                                        ("lilac", lilac))}
    nearest = []
    for seed in range(12):
        out = stage.to_mpp(base_triple(POINTS), 0.25, seed=seed)
        assert out.params["missed_centroids"] == 0
        mean = np.array(Stain.of([out.image]).mean)
        nearest.append(min(stains, key=lambda name: np.abs(stains[name] - mean).sum()))
    assert 2 <= nearest.count("pink") <= 10, nearest


def test_saved_stage_loads_through_the_registry_contract(stage: TextureStage, tmp_path: Path) -> None:
    spec = stage.save(tmp_path / "second_stage")
    assert spec["name"] == "texture"
    loaded = load(tmp_path / "second_stage", spec, StageContext(CLASSES, 0.5, len(CLASSES)))
    assert isinstance(loaded, SecondStage) and len(loaded.sha256) == 64
    with pytest.raises(BankError, match="classes"):
        load(tmp_path / "second_stage", spec, StageContext(CLASSES[:3], 0.5, 3))
    for bad in ({"patch": 40}, {"overlap": 48}, {"weights": {"key": float("nan")}}, {"slides": 0}, {"colour": 1},
                {"size_to_bank": 1.5}, {"size_to_bank": float("nan")}):
        with pytest.raises(BankError, match="config.json: bad texture settings"):
            load(tmp_path / "second_stage", {**spec, "settings": bad}, StageContext(CLASSES, 0.5, len(CLASSES)))
    # without its recorded checksum the bank loads only when the user trusts it (--trust-unverified)
    (tmp_path / "second_stage" / "checksums.json").unlink()
    with pytest.raises(BankError, match="texture_bank.safetensors"):
        load(tmp_path / "second_stage", spec, StageContext(CLASSES, 0.5, len(CLASSES)))
    trusted = StageContext(CLASSES, 0.5, len(CLASSES), trust_unverified=True)
    assert load(tmp_path / "second_stage", spec, trusted).sha256 == loaded.sha256
    stage.save(tmp_path / "second_stage")
    (tmp_path / "second_stage" / "texture_bank.safetensors").write_bytes(b"changed")
    with pytest.raises(BankError, match="texture_bank.safetensors"):
        load(tmp_path / "second_stage", spec, trusted)  # trust covers a missing checksum, never a wrong one


def test_min_cut_follows_the_cheapest_seam() -> None:
    error = np.ones((6, 5))
    path = [1, 2, 2, 3, 2, 1]
    error[np.arange(6), path] = 0
    assert min_cut(error).tolist() == path


def test_cuts_run_under_the_nuclei_that_will_cover_them() -> None:
    """Where a pasted nucleus will lie, a cut is hidden: the min-cut is drawn there when the choice is free."""
    rng = np.random.default_rng(0)
    old = rng.uniform(0, 255, (64, 64, 3)).astype(np.float32)
    new = rng.uniform(0, 255, (64, 64, 3)).astype(np.float32)
    filled = np.zeros((64, 64), bool)
    filled[:, :16] = True  # the left overlap is placed
    cover = np.zeros((64, 64), bool)
    for y in range(64):  # a winding band through the overlap, as nuclei in a row
        x = 8 + int(4 * np.sin(y / 6))
        cover[y, x:x + 4] = True

    def on_cover(under_nuclei: float) -> float:
        keep_new = seam_mask(old, new, filled, cover, under_nuclei)
        cut = (~keep_new[:, :16]).sum(1) - 1  # the last column kept from the old patch, per row
        return float(cover[np.arange(64), cut].mean())

    assert on_cover(TextureSettings().weights.under_nuclei) > 0.9
    assert on_cover(1.0) < 0.5


def test_largest_copy_measures_the_biggest_region() -> None:
    source = np.zeros((20, 20), np.int64)
    source[:10, :10] = 5  # 100 px copied with one shift
    source[10:, :] = np.arange(200).reshape(10, 20)  # every pixel its own copy
    assert largest_copy(source) == 10


def test_an_edit_replaces_nuclei_only_inside_the_region(stage: TextureStage) -> None:
    tile = synthetic_tile(np.random.default_rng(11), "edited", "slide9")
    ids = np.unique(tile.inst_map)[1:]
    removed = int(ids[0])
    region = cv2.dilate((tile.inst_map == removed).astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
    region &= ~np.isin(tile.inst_map, [i for i in ids if i != removed])  # no other nucleus cut in two
    region |= tile.inst_map == removed
    ys, xs = np.nonzero(region & (cv2.erode(region.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0))
    cy, cx = np.argwhere(tile.inst_map == removed).mean(0)
    far = int(np.argmax((ys - cy) ** 2 + (xs - cx) ** 2))  # the new nucleus beside, not over, the removed one
    added = Point(float(xs[far]), float(ys[far]), "spindle")
    layout = Layout(96, 96, CLASSES, [added], mpp=0.25)
    out = stage.into_tile(tile.image, tile.inst_map, region, layout, np.zeros((96, 96), np.int32), seed=1)
    np.testing.assert_array_equal(out.image[~region], tile.image[~region])
    assert out.inst_map[int(added.y), int(added.x)] == 1 and out.inst_classes == {1: CLASSES.index("spindle")}
    old_only = (tile.inst_map == removed) & (cv2.dilate((out.inst_map > 0).astype(np.uint8), np.ones((7, 7))) == 0)
    assert old_only.sum() > 5  # what the new nucleus does not cover of the removed one is tissue now
    assert out.image[old_only].astype(np.float32).mean() > tile.image[old_only].astype(np.float32).mean() + 60


def test_a_bank_within_budget_keeps_every_slide(tmp_path: Path) -> None:
    from cosyn.core.classes import ClassSet
    from cosyn.core.instances import instance_table
    from cosyn.data.sample import Sample

    rng = np.random.default_rng(5)
    samples = []
    for i in range(9):
        t = synthetic_tile(rng, f"s{i}", f"slide{i % 3}")
        class_map = np.vectorize(lambda k, t=t: t.inst_classes.get(k, 0))(t.inst_map).astype(np.uint8)
        ids, centroids, classes = instance_table(t.inst_map, class_map)
        samples.append(Sample(t.name, t.image, t.inst_map, class_map, ids, centroids, classes,
                              ClassSet(tuple(CLASSES)), "colon", 0.25, t.source))
    whole = bank_from_samples(samples, CLASSES, "test")
    assert len(whole.tiles) == 9 and whole.mpp == 0.25
    small = bank_from_samples(samples, CLASSES, "test", max_bytes=4 * 9000)
    assert 0 < len(small.tiles) < 9 and len({t.source for t in small.tiles}) == 3
    samples[0].mpp = 0.5
    with pytest.raises(BankError, match="one µm/px"):
        bank_from_samples(samples, CLASSES, "test")


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"the CoNSeP patches are not at {SHARED_DATA}")
def test_on_real_tiles_no_copy_exceeds_the_cap_and_no_centroid_is_missed(tmp_path: Path) -> None:
    """A bank of three real training slides; a real validation tile's layout, its base triple at 0.5 µm/px."""
    from cosyn.core.resample import at_mpp
    from cosyn.data.dataset import resample_sample, split_by_source
    from cosyn.data.formats import read_dataset
    from cosyn.data.targets import triple_from_sample
    from cosyn.training.config import TrainConfig

    seq = read_dataset(SHARED_DATA)
    samples = [seq[i] for i in range(len(seq))]
    train, val = split_by_source(samples, TrainConfig.val_fraction, TrainConfig.seed)
    slides = sorted({samples[i].source for i in train})[:3]
    bank = bank_from_samples([samples[i] for i in train if samples[i].source in slides], CLASSES, "test")
    stage = TextureStage(bank)
    real = samples[val[5]]
    base = at_mpp(triple_from_sample(resample_sample(real, 0.5)), 0.5)
    for seed in range(3):
        out = stage.to_mpp(base, 0.25, seed)
        assert out.image.shape == real.image.shape and out.params["missed_centroids"] == 0
        assert 0 < out.params["largest_copy_um"] <= stage.settings.copy_cap_px * 0.25


def test_size_to_bank_moves_each_class_to_the_bank_sizes_and_keeps_their_order(stage: TextureStage) -> None:
    nuclei = stage.nuclei
    inst = np.zeros((96, 96), np.int32)
    points = np.array([[20, 20], [60, 20], [20, 60], [60, 60]], float)
    for k, ((x, y), r) in enumerate(zip(points, (2, 3, 2, 4), strict=True), start=1):
        cv2.circle(inst, (int(x), int(y)), r, k, -1)
    classes = np.array([3, 3, 4, 4])
    kept = targets_from_base(points, classes, inst, nuclei)
    moved = targets_from_base(points, classes, inst, nuclei, size_to_bank=1.0)
    half = targets_from_base(points, classes, inst, nuclei, size_to_bank=0.5)
    for c in (3, 4):
        before, after, between = ([t.log_area for t in ts if t.cls == c] for ts in (kept, moved, half))
        assert np.median(after) == pytest.approx(np.median(nuclei.log_area[nuclei.cls == c]), abs=1e-5)
        assert np.diff(after) == pytest.approx(np.diff(before))  # the base still says which is larger, and how much
        assert between == pytest.approx((np.array(before) + np.array(after)) / 2)


def test_marking_ink_is_never_quilted_into_an_output(tmp_path: Path) -> None:
    """A bank whose every tile has a block of black ink: no patch over it is indexed, so no output has any
    ink, although the quilt had to look for tissue past it (and would find ink without the filter)."""
    from cosyn.stages.texture.catalogue import INK_LEVEL, ink_fraction, patch_index

    rng = np.random.default_rng(1)
    tiles = [synthetic_tile(rng, f"t{i}", f"slide{i % 2}") for i in range(4)]
    for t in tiles:
        t.image[:24, :24] = 20  # ink, with no annotated nucleus under it
        t.inst_map[:24, :24] = 0
    bank = TextureBank(tiles, 0.25, CLASSES, "inked test tiles")
    index = patch_index(bank, [0, 1], 64, 16, 1.0)
    assert len(index.tile) == 2 * 5  # of the 9 positions per tile, the 4 over the ink are left out
    inked = [ink_fraction(bank.tiles[t].image, yx[None], 64)[0] for t, yx in zip(index.tile, index.yx, strict=True)]
    assert max(inked) == 0
    assert len(patch_index(bank, [0, 1], 64, 16, 1.0, max_ink=1.0).tile) == 2 * 9  # the control: no filter
    stage = TextureStage(bank)
    for seed in range(4):
        out = stage.to_mpp(base_triple(POINTS), 0.25, seed)
        assert not (out.image.max(2) < INK_LEVEL).any()


def test_a_slide_that_is_all_ink_is_still_quilted_from() -> None:
    from cosyn.stages.texture.catalogue import patch_index

    tile = synthetic_tile(np.random.default_rng(2), "t0", "slide0")
    tile.image[:] = 20
    index = patch_index(TextureBank([tile], 0.25, CLASSES, "all ink"), [0], 64, 16, 1.0)
    assert len(index.tile) == 9
