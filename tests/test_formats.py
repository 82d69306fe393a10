import json
import os
import shutil

import numpy as np
import pytest
import scipy.io as sio
import tifffile
from conftest import SHARED_DATA
from PIL import Image

from cosyn.core.classes import CONIC, CONSEP, PANNUKE, TISSUES, ClassSet
from cosyn.core.instances import instance_table
from cosyn.data.formats import FORMATS, detect_format, read_dataset, write_dataset, write_folder
from cosyn.data.prepare import prepare
from cosyn.data.report import Validator, validate
from cosyn.data.sample import DataError, Sample

CLASSES_OF = {"consep": CONSEP, "hovernet": CONSEP, "folder": CONSEP, "pannuke": PANNUKE, "conic": CONIC}


def three_tiles(make, classes=CONSEP):
    """Two tiles from source tileA (12 and 5 discs, disjoint id ranges) and an empty one from tileB."""
    return [
        make(n=12, classes=classes, name="tileA_000", seed=1),
        make(n=5, classes=classes, name="tileA_001", first_id=300, id_step=1, seed=2),
        make(n=0, classes=classes, name="tileB_000", seed=3),
    ]


def pannuke_relabelled(s):
    """The documented PanNuke relabelling: new ids 1..N by (class channel, original id)."""
    order = np.lexsort((s.inst_ids, s.inst_classes))
    lut = np.zeros(int(s.inst_map.max()) + 1, np.int32)
    lut[s.inst_ids[order]] = np.arange(1, len(order) + 1)
    return lut[s.inst_map], s.centroids[order], s.inst_classes[order]


# -- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_round_trips(fmt, tmp_path, make_disc_sample):
    originals = three_tiles(make_disc_sample, CLASSES_OF[fmt])
    write_dataset(originals, tmp_path / "ds", fmt)
    got = list(read_dataset(tmp_path / "ds", fmt))

    assert len(got) == 3
    for orig, back in zip(originals, got, strict=True):
        inst, centroids, inst_classes = (
            pannuke_relabelled(orig) if fmt == "pannuke" else (orig.inst_map, orig.centroids, orig.inst_classes)
        )
        assert back.image.dtype == np.uint8 and back.inst_map.dtype == np.int32 and back.class_map.dtype == np.uint8
        np.testing.assert_array_equal(back.image, orig.image)
        np.testing.assert_array_equal(back.inst_map, inst)
        np.testing.assert_array_equal(back.class_map, orig.class_map)
        np.testing.assert_array_equal(back.centroids, centroids)
        np.testing.assert_array_equal(back.inst_classes, inst_classes)
        np.testing.assert_array_equal(back.inst_ids, np.unique(inst)[1:])
        assert back.classes == orig.classes and back.tissue == "colon"
        assert back.mpp == (0.5 if fmt == "conic" else 0.25)
    per_image = fmt in ("pannuke", "conic")  # no tile ids in these formats
    expected_sources = ["ds_00000", "ds_00001", "ds_00002"] if per_image else ["tileA", "tileA", "tileB"]
    assert [s.source for s in got] == expected_sources


def test_instance_ids_above_65535_round_trip_through_folder(tmp_path):
    # every horizontal pixel pair is its own nucleus: 73,728 instances with ids 70,000..143,727
    h = w = 384
    inst_map = (np.arange(h * w // 2, dtype=np.int32).reshape(h, w // 2).repeat(2, axis=1) + 70_000).astype(np.int32)
    class_map = (1 + inst_map % 4).astype(np.uint8)
    ids, centroids, inst_classes = instance_table(inst_map, class_map)
    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    big = Sample("big_000", image, inst_map, class_map, ids, centroids, inst_classes, CONSEP, source="big")

    write_folder([big], tmp_path / "ds")
    assert tifffile.imread(tmp_path / "ds/instances/big_000.tif").dtype == np.int32
    back = read_dataset(tmp_path / "ds", "folder")[0]

    assert len(back.inst_ids) == 73_728 and back.inst_ids.max() == 143_727
    np.testing.assert_array_equal(back.inst_map, inst_map)
    np.testing.assert_array_equal(back.centroids, centroids)
    np.testing.assert_array_equal(back.inst_classes, inst_classes)


def test_folder_reads_16_bit_png_instances(tmp_path, make_disc_sample):
    s = make_disc_sample(n=3, first_id=60_000)
    for d in ("images", "instances", "classes"):
        (tmp_path / d).mkdir()
    Image.fromarray(s.image).save(tmp_path / "images/a.png")
    Image.fromarray(s.inst_map.astype(np.uint16)).save(tmp_path / "instances/a.png")
    Image.fromarray(s.class_map).save(tmp_path / "classes/a.png")

    back = read_dataset(tmp_path)[0]

    np.testing.assert_array_equal(back.inst_map, s.inst_map)
    assert back.classes == CONSEP and back.source == "a" and back.mpp is None  # no classes.json


def test_folder_keeps_class_set_and_per_image_tissue(tmp_path, make_disc_sample):
    classes = ClassSet(("background", "tumour", "immune"))
    a = make_disc_sample(n=4, classes=classes, name="a_0")
    b = make_disc_sample(n=2, classes=classes, name="b_0", source="slide7")
    b.tissue = "breast"
    write_folder([a, b], tmp_path)

    back = read_dataset(tmp_path)

    assert [s.classes for s in back] == [classes, classes]
    assert [(s.tissue, s.source) for s in back] == [("colon", "a"), ("breast", "slide7")]


def test_pannuke_float64_stacks_and_tissue_names(tmp_path, make_disc_sample):
    # real PanNuke stores images and masks as float64 and tissues as 'Adrenal_gland', 'HeadNeck', ...
    originals = [make_disc_sample(n=5, classes=PANNUKE, seed=i) for i in range(3)]
    write_dataset(originals, tmp_path, "pannuke")
    for name in ("images.npy", "masks.npy"):
        np.save(tmp_path / name, np.load(tmp_path / name).astype(np.float64))
    np.save(tmp_path / "types.npy", np.array(["Adrenal_gland", "Bile-duct", "HeadNeck"]))

    back = read_dataset(tmp_path, "pannuke")

    assert [s.tissue for s in back] == ["adrenal gland", "bile duct", "head neck"]
    assert all(s.tissue in TISSUES for s in back)
    np.testing.assert_array_equal(back[2].image, originals[2].image)
    np.testing.assert_array_equal(back[2].inst_map, pannuke_relabelled(originals[2])[0])


def test_pannuke_ids_colliding_across_channels_become_distinct(tmp_path):
    masks = np.zeros((1, 16, 16, 6), np.int32)
    masks[0, 2:5, 2:5, 0] = 1  # neoplastic #1
    masks[0, 8:11, 8:11, 2] = 1  # connective #1: same id, other channel
    masks[0, 12:14, 2:4, 2] = 5
    np.save(tmp_path / "images.npy", np.zeros((1, 16, 16, 3), np.uint8))
    np.save(tmp_path / "masks.npy", masks)

    s = read_dataset(tmp_path)[0]

    assert s.inst_ids.tolist() == [1, 2, 3]
    assert s.inst_classes.tolist() == [1, 3, 3]
    assert s.inst_map[3, 3] == 1 and s.inst_map[9, 9] == 2 and s.inst_map[12, 2] == 3


def test_sample_sequence_is_lazy_and_indexable(tmp_path, make_disc_sample):
    write_dataset(three_tiles(make_disc_sample), tmp_path, "folder")
    (tmp_path / "images/tileB_000.png").write_bytes(b"not a png")

    seq = read_dataset(tmp_path)  # listing only: the broken image is not decoded yet

    assert seq.names == ["tileA_000", "tileA_001", "tileB_000"]
    assert seq[-2].name == "tileA_001"
    assert [s.name for s in seq[:2]] == ["tileA_000", "tileA_001"]
    with pytest.raises(IndexError):
        seq[3]
    with pytest.raises(DataError, match="tileB_000.png"):
        seq[2]


# -- detection ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_detects_every_format(fmt, tmp_path, make_disc_sample):
    write_dataset(three_tiles(make_disc_sample, CLASSES_OF[fmt]), tmp_path, fmt)
    assert detect_format(tmp_path) == fmt


def test_detects_and_reads_split_folders(tmp_path, make_disc_sample):
    # HoVer-Net's CoNSeP: CoNSeP/Train/{Images,Labels}, CoNSeP/Test/{Images,Labels}
    write_dataset([make_disc_sample(name="train_1")], tmp_path / "Train", "hovernet")
    write_dataset([make_disc_sample(name="test_1")], tmp_path / "Test", "hovernet")

    assert detect_format(tmp_path) == "hovernet"
    assert read_dataset(tmp_path).names == ["test_1", "train_1"]
    assert read_dataset(tmp_path, split="train").names == ["train_1"]


def test_detects_and_reads_pannuke_fold_layout(tmp_path, make_disc_sample):
    # PanNuke ships Fold 1/images/fold1/{images,types}.npy and Fold 1/masks/fold1/masks.npy
    fold = tmp_path / "Fold 1"
    write_dataset([make_disc_sample(classes=PANNUKE)], fold, "pannuke")
    for name, sub in (("images.npy", "images"), ("types.npy", "images"), ("masks.npy", "masks")):
        (fold / sub / "fold1").mkdir(parents=True, exist_ok=True)
        shutil.move(fold / name, fold / sub / "fold1" / name)

    assert detect_format(fold) == "pannuke"
    s = read_dataset(fold)[0]
    assert (s.name, s.source, s.tissue) == ("fold1_00000", "fold1_00000", "colon")


def test_detection_failure_says_what_it_looked_for(tmp_path):
    (tmp_path / "pictures").mkdir()
    with pytest.raises(DataError, match="cannot tell the dataset format") as err:
        detect_format(tmp_path)
    assert str(tmp_path) in str(err.value)
    assert all(fmt in str(err.value) for fmt in FORMATS) and "masks.npy" in str(err.value)


# -- errors -------------------------------------------------------------------------------------
# Each corruptor breaks a valid dataset and returns the path the DataError must name.


def _save_png(path, arr):
    Image.fromarray(arr).save(path)


def folder_shape_mismatch(root):
    _save_png(root / "classes/tileA_001.png", np.zeros((32, 80), np.uint8))
    return root / "images/tileA_001.png"


def folder_missing_partner(root):
    (root / "instances/tileA_001.tif").unlink()
    return root / "images/tileA_001.png"


def folder_orphan_partner(root):
    _save_png(root / "classes/stray.png", np.zeros((64, 80), np.uint8))
    return root / "classes/stray.png"


def folder_class_out_of_set(root):
    _save_png(root / "classes/tileA_001.png", np.full((64, 80), 9, np.uint8))
    return root / "classes/tileA_001.png"


def folder_corrupt_image(root):
    (root / "images/tileA_001.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return root / "images/tileA_001.png"


def folder_float_instances(root):
    tifffile.imwrite(root / "instances/tileA_001.tif", np.zeros((64, 80), np.float32))
    return root / "instances/tileA_001.tif"


def folder_grey_image(root):
    _save_png(root / "images/tileA_001.png", np.zeros((64, 80), np.uint8))
    return root / "images/tileA_001.png"


def folder_bad_classes_json(root):
    (root / "classes.json").write_text('{"classes": ["nuclei"]}')
    return root / "classes.json"


def folder_empty(root):
    for d in ("images", "instances", "classes"):
        shutil.rmtree(root / d)
        (root / d).mkdir()
    return root


def consep_missing_mat(root):
    (root / "type_mat/train/tileA_001.mat").unlink()
    return root / "images/train/tileA_001.png"


def consep_count_mismatch(root):
    path = root / "type_mat/train/tileA_001.mat"
    mat = sio.loadmat(path)
    sio.savemat(path, {"inst_type": mat["inst_type"][:-1], "inst_centroid": mat["inst_centroid"][:-1]})
    return path


def consep_pickled_npy(root):
    path = root / "inst/train/tileA_001.npy"
    np.save(path, np.array([{"ids": 1}], dtype=object), allow_pickle=True)
    return path


def consep_float_npy(root):
    path = root / "inst/train/tileA_001.npy"
    np.save(path, np.zeros((64, 80), np.float64))
    return path


def consep_3d_inst(root):
    path = root / "inst/train/tileA_001.npy"
    np.save(path, np.zeros((64, 80, 2), np.int32))
    return path


def consep_inst_shape_mismatch(root):
    np.save(root / "inst/train/tileA_001.npy", np.zeros((64, 64), np.int32))
    return root / "images/train/tileA_001.png"


def hovernet_class_out_of_set(root):
    path = root / "Labels/tileA_001.mat"
    mat = sio.loadmat(path)
    mat["type_map"][mat["type_map"] > 0] = 7  # original 7-class CoNSeP label
    sio.savemat(path, {k: mat[k] for k in ("inst_map", "type_map", "inst_type", "inst_centroid")})
    (root / "classes.json").unlink()
    return path


def hovernet_corrupt_mat(root):
    path = root / "Labels/tileA_001.mat"
    path.write_bytes(b"MATLAB 5.0 MAT-file" + b"\0" * 40)
    return path


def hovernet_missing_key(root):
    path = root / "Labels/tileA_001.mat"
    mat = sio.loadmat(path)
    sio.savemat(path, {k: mat[k] for k in ("inst_map", "type_map", "inst_type")})
    return path


def pannuke_pickled_types(root):
    np.save(root / "types.npy", np.array(["Colon", "Colon", None], dtype=object), allow_pickle=True)
    return root / "types.npy"


def pannuke_masks_count_mismatch(root):
    np.save(root / "masks.npy", np.load(root / "masks.npy")[:2])
    return root / "masks.npy"


def pannuke_3d_images(root):
    np.save(root / "images.npy", np.load(root / "images.npy")[..., 0])
    return root / "images.npy"


def pannuke_fractional_masks(root):
    np.save(root / "masks.npy", np.load(root / "masks.npy") * 0.5)
    return root / "masks.npy"


def conic_wrong_channels(root):
    np.save(root / "labels.npy", np.load(root / "labels.npy")[..., :1])
    return root / "labels.npy"


def conic_class_out_of_set(root):
    labels = np.load(root / "labels.npy")
    labels[1, ..., 1][labels[1, ..., 0] > 0] = 9
    np.save(root / "labels.npy", labels)
    return root / "labels.npy"


CORRUPTIONS = [
    ("folder", folder_shape_mismatch),
    ("folder", folder_missing_partner),
    ("folder", folder_orphan_partner),
    ("folder", folder_class_out_of_set),
    ("folder", folder_corrupt_image),
    ("folder", folder_float_instances),
    ("folder", folder_grey_image),
    ("folder", folder_bad_classes_json),
    ("folder", folder_empty),
    ("consep", consep_missing_mat),
    ("consep", consep_count_mismatch),
    ("consep", consep_pickled_npy),
    ("consep", consep_float_npy),
    ("consep", consep_3d_inst),
    ("consep", consep_inst_shape_mismatch),
    ("hovernet", hovernet_class_out_of_set),
    ("hovernet", hovernet_corrupt_mat),
    ("hovernet", hovernet_missing_key),
    ("pannuke", pannuke_pickled_types),
    ("pannuke", pannuke_masks_count_mismatch),
    ("pannuke", pannuke_3d_images),
    ("pannuke", pannuke_fractional_masks),
    ("conic", conic_wrong_channels),
    ("conic", conic_class_out_of_set),
]


@pytest.mark.parametrize(("fmt", "corrupt"), CORRUPTIONS, ids=[c.__name__ for _, c in CORRUPTIONS])
def test_bad_input_raises_data_error_naming_the_file(fmt, corrupt, tmp_path, make_disc_sample):
    write_dataset(three_tiles(make_disc_sample, CLASSES_OF[fmt]), tmp_path, fmt)
    bad_path = corrupt(tmp_path)

    with pytest.raises(DataError) as err:
        list(read_dataset(tmp_path, fmt))

    assert str(bad_path) in str(err.value)


def test_class_error_on_hovernet_labels_explains_the_consep_merge(tmp_path, make_disc_sample):
    write_dataset(three_tiles(make_disc_sample), tmp_path, "hovernet")
    hovernet_class_out_of_set(tmp_path)
    with pytest.raises(DataError, match=r"class id 7 outside the class set 0\.\.4.*merged"):
        list(read_dataset(tmp_path))


def test_missing_dataset_folder(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        read_dataset(tmp_path / "nope")


# -- validation report --------------------------------------------------------------------------


def test_report_counts_known_discs(make_disc_sample):
    report = validate(three_tiles(make_disc_sample))

    assert (report.n_samples, report.n_sources, report.n_instances) == (3, 2, 17)
    assert report.instances_max == 12 and report.instances_mean == pytest.approx(17 / 3)
    assert report.sizes == {"80x64": 3}
    # classes cycle 1,2,3,4 over the discs: 12 discs -> 3 each, 5 discs -> 2,1,1,1
    assert report.class_histogram == {1: 5, 2: 4, 3: 4, 4: 4}
    assert report.empty_tiles == ["tileB_000"] and report.problems == []
    assert json.loads(report.to_json())["class_histogram"][0] == {"id": 1, "name": "other", "instances": 5}
    assert "| 4 | spindle | 4 |" in report.to_markdown() and "None found." in report.to_markdown()


def test_report_lists_inconsistent_instances(make_disc_sample):
    s = make_disc_sample(n=6, name="bad_000")
    s.inst_classes[0] = 4  # disc 0 is class 1 in the class map
    s.centroids[1] += (3.0, 0.0)
    s.inst_classes[2] = 0
    s.class_map[0, 0] = 2  # a labelled pixel outside every nucleus
    ok = make_disc_sample(n=2, name="ok_000")

    problems = validate([s, ok]).problems

    assert len(problems) == 4 and all(p.startswith("bad_000: ") for p in problems)
    assert "centroid" in problems[0] and "id: 17 by 3.0 px" in problems[0]
    assert "class 0" in problems[1] and "id: 24" in problems[1]
    assert "majority" in problems[2] and "id: 10: 4 vs 1" in problems[2]
    assert problems[3] == "bad_000: 1 class-map pixel(s) are foreground outside every instance"


# -- prepare ------------------------------------------------------------------------------------


def test_prepare_writes_normalised_dataset_and_report(tmp_path, make_disc_sample):
    originals = three_tiles(make_disc_sample)
    write_dataset(originals, tmp_path / "src", "consep")

    report = prepare(tmp_path / "src", tmp_path / "out", progress=False)

    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "classes", "classes.json", "images", "instances", "report.json", "report.md"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]  # no temp folder left
    assert report.fmt == "consep" and report.n_instances == 17
    assert json.loads((out / "report.json").read_text())["instances"]["total"] == 17
    back = read_dataset(out)
    assert detect_format(out) == "folder" and len(back) == 3
    for orig, s in zip(originals, back, strict=True):
        np.testing.assert_array_equal(s.inst_map, orig.inst_map)
        np.testing.assert_array_equal(s.class_map, orig.class_map)
        np.testing.assert_array_equal(s.image, orig.image)
        assert (s.source, s.mpp, s.tissue) == (orig.source, 0.25, "colon")


def test_prepare_can_resample_to_the_working_mpp(tmp_path, make_disc_sample):
    """A copy at the model's mpp trains exactly like the original: training's own resampling
    of it is then a no-op."""
    from cosyn.data.dataset import prepare_tile

    originals = three_tiles(make_disc_sample)
    write_dataset(originals, tmp_path / "src", "consep")
    prepare(tmp_path / "src", tmp_path / "out", progress=False, mpp=0.5)
    back = read_dataset(tmp_path / "out")
    for orig, s in zip(originals, back, strict=True):
        assert s.mpp == 0.5 and s.image.shape[:2] == (orig.height // 2, orig.width // 2)
        direct, via_copy = prepare_tile(orig, 0.5), prepare_tile(s, 0.5)
        for field in ("image", "class_map", "dist", "points"):
            np.testing.assert_array_equal(getattr(via_copy, field), getattr(direct, field))


def test_prepare_is_atomic_when_a_tile_is_corrupt(tmp_path, make_disc_sample):
    write_dataset(three_tiles(make_disc_sample), tmp_path / "src", "folder")
    folder_corrupt_image(tmp_path / "src")  # the second of three tiles: the first is already written

    with pytest.raises(DataError, match="tileA_001.png"):
        prepare(tmp_path / "src", tmp_path / "out", progress=False)

    assert sorted(os.listdir(tmp_path)) == ["src"]


def test_prepare_names_every_bad_tile_in_one_run(tmp_path, make_disc_sample):
    write_dataset(three_tiles(make_disc_sample), tmp_path / "src", "folder")
    folder_corrupt_image(tmp_path / "src")
    folder_float_instances(tmp_path / "src")  # the same tile's other file: still one bad tile
    (tmp_path / "src/images/tileB_000.png").write_bytes(b"not an image")

    with pytest.raises(DataError, match="2 of 3 tiles cannot be used; nothing was written") as e:
        prepare(tmp_path / "src", tmp_path / "out", progress=False)

    assert "tileA_001" in str(e.value) and "tileB_000.png" in str(e.value)
    assert sorted(os.listdir(tmp_path)) == ["src"]


def test_prepare_keeps_old_output_when_overwrite_fails(tmp_path, make_disc_sample):
    write_dataset(three_tiles(make_disc_sample), tmp_path / "src", "folder")
    folder_corrupt_image(tmp_path / "src")
    (tmp_path / "out").mkdir()
    (tmp_path / "out/keep.txt").write_text("old")

    with pytest.raises(DataError):
        prepare(tmp_path / "src", tmp_path / "out", progress=False, overwrite=True)

    assert sorted(os.listdir(tmp_path)) == ["out", "src"]
    assert os.listdir(tmp_path / "out") == ["keep.txt"]


def test_prepare_refuses_non_empty_output_unless_overwrite(tmp_path, make_disc_sample):
    write_dataset(three_tiles(make_disc_sample), tmp_path / "src", "folder")
    (tmp_path / "out").mkdir()
    (tmp_path / "out/keep.txt").write_text("old")

    with pytest.raises(FileExistsError, match="not empty; pass --overwrite"):
        prepare(tmp_path / "src", tmp_path / "out", progress=False)
    prepare(tmp_path / "src", tmp_path / "out", progress=False, overwrite=True)

    assert not (tmp_path / "out/keep.txt").exists() and len(read_dataset(tmp_path / "out")) == 3
    assert sorted(os.listdir(tmp_path)) == ["out", "src"]


# -- real data ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_consep():
    """One pass over the 432 real patches: the report plus the worst centroid error."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real CoNSeP patches not found at {SHARED_DATA}")
    samples = read_dataset(SHARED_DATA)
    validator, worst = Validator(), 0.0
    for s in samples:
        validator.add(s)
        _, means, _ = instance_table(s.inst_map, s.class_map)
        if len(means):
            worst = max(worst, float(np.abs(s.centroids - means).max()))
    return samples, validator.report(), worst


def test_real_consep_patches(real_consep):
    samples, report, worst_centroid_error = real_consep

    assert detect_format(SHARED_DATA) == "consep"
    assert report.n_samples == len(samples) == 432 and report.n_sources == 27
    assert report.n_instances == 18_216 and report.instances_max == 172 and len(report.empty_tiles) == 21
    assert report.class_histogram == {1: 432, 2: 4507, 3: 6609, 4: 6668}
    assert worst_centroid_error < 1e-9
    assert report.problems == []


def test_real_consep_keeps_tile_instance_ids(real_consep):
    samples = real_consep[0]
    s = samples[samples.names.index("train_12_007")]
    raw = np.load(SHARED_DATA / "inst/train/train_12_007.npy")
    np.testing.assert_array_equal(s.inst_ids, np.unique(raw)[1:])
    assert s.inst_ids.max() > len(s.inst_ids)  # tile ids, not relabelled 1..N
    assert (s.source, s.mpp, s.tissue, s.classes) == ("train_12", 0.25, "colon", CONSEP)
