"""The texture stage: a base triple at the model's µm/px → a triple at the bank's, whose every pixel is real
tissue from the training tiles.

1. Pick a source slide like the layout (class mix, density, colour): one slide's tissue for the whole tile.
2. Quilt the background from that slide, guided by the base image's low frequencies brought to its colours
   and by where nuclei will go (quilt.py).
3. Paste a real nucleus of the requested class at every centroid, sized and turned like the base's nucleus
   there (paste.py); real nuclei the quilt carried along elsewhere are inpainted away, so no nucleus is
   in the image without one in the labels.
4. Instances are the pasted masks; class and distance maps follow from them.
5. Stain (stain.py): the finished image is moved from its source slide's stain to that of a bank slide drawn
   at random, since a slide's stain does not depend on the tissue a layout asks for; asked for a reference
   stain (the base triple's STAIN_PARAM), it is moved to that instead.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from skimage.measure import label as connected

from cosyn.core.instances import paint_classes
from cosyn.core.layout import Layout
from cosyn.core.maps import distance_map
from cosyn.core.resample import at_mpp, resample_image, resample_instances
from cosyn.core.triple import Triple
from cosyn.io.fileio import record_checksum, verified_sha256
from cosyn.stages.base import STAIN_PARAM, StageContext
from cosyn.stages.texture.bank import BANK_NAME, BankError, TextureBank, load_bank, save_bank
from cosyn.stages.texture.catalogue import PatchIndex, patch_index
from cosyn.stages.texture.fill import JPEG_GRID, fill_holes
from cosyn.stages.texture.nuclei import Nuclei
from cosyn.stages.texture.paste import Paste, blend, choose, footprint, oriented, targets_from_base
from cosyn.stages.texture.quilt import QuiltWeights, quilt
from cosyn.stages.texture.stain import EMPTY_LEVEL, Stain, lab_of, restain, toward


@dataclass
class TextureSettings:
    """The quilt's geometry, in px at the bank's µm/px. Patches, their steps and the indexed positions lie on
    the 16 px JPEG grid (fill.JPEG_GRID), so every copied block keeps its compression grid on the output's
    (outputs are multiples of 16 px: the base canvas is a multiple of 8 at twice the µm/px)."""

    patch: int = 64  # 16 µm: the best of 32, 48, 64 and 128 on the realism judge (docs/model.md)
    overlap: int = 16
    stride: int = 16  # between indexed patch positions
    # of the nucleus-layout part of a patch key against its colour part: 3 follows the layout more and the base
    # image's mush less than 1 did (docs/model.md, measured on two sets of draws)
    nucleus_weight: float = 3.0
    size_to_bank: float = 1.0  # how far pasted nuclei's sizes move from the base's towards the bank's (0..1)
    slides: int = 3  # the seed picks the source slide among this many best matches
    weights: QuiltWeights = field(default_factory=QuiltWeights)

    def __post_init__(self) -> None:
        grid = JPEG_GRID
        if not all(isinstance(v, int) and v >= 0 for v in (self.patch, self.overlap, self.stride, self.slides)):
            raise ValueError("patch, overlap, stride and slides must be non-negative integers")
        if self.patch < grid or self.patch % grid or self.stride % grid or self.stride == 0 \
                or (self.patch - self.overlap) % grid or not 0 <= self.overlap <= self.patch // 2:
            raise ValueError(f"patch {self.patch}, overlap {self.overlap} and stride {self.stride} must be multiples "
                             f"of {grid} px with the overlap at most half the patch")
        numbers = (self.nucleus_weight, self.weights.overlap, self.weights.key, self.weights.stray_nuclei,
                   self.weights.seam_sigma, self.weights.under_nuclei)
        if self.slides < 1 or not all(np.isfinite(v) and 0 <= v <= 100 for v in numbers):
            raise ValueError("slides must be at least 1, and the weights and seam_sigma finite numbers in 0..100")
        if not 0 <= self.size_to_bank <= 1:  # a fraction of the way to the bank's sizes; NaN fails too
            raise ValueError(f"size_to_bank must lie in 0..1, not {self.size_to_bank}")

    @property
    def copy_cap_px(self) -> int:
        """The documented cap on an output's largest verbatim copy: a patch and both its overlaps (a patch never
        continues the copy of the patch left of or above it)."""
        return self.patch + 2 * self.overlap

    @classmethod
    def from_dict(cls, d: dict) -> TextureSettings:
        d = dict(d)
        weights = QuiltWeights(**d.pop("weights", {}))
        return cls(**d, weights=weights)


class TextureStage:
    """A base triple whose params carry STAIN_PARAM (a Stain's dict; `CoSynPipeline.sample(stain=...)` puts it
    there) comes out in that stain."""

    name = "texture"
    takes_stain = True

    def __init__(self, bank: TextureBank, settings: TextureSettings | None = None, sha256: str = "",
                 bank_path: Path | None = None) -> None:
        self.bank, self.settings = bank, settings or TextureSettings()
        self._sha256, self._bank_path = sha256, bank_path
        self.nuclei: Nuclei = bank.catalogue()
        self._slides = bank.sources()
        self._slide_tiles = {s: [i for i, t in enumerate(bank.tiles) if t.source == s] for s in self._slides}
        self._slide_profiles = np.stack([self._profile_of_slide(s) for s in self._slides])
        self._indexes: dict[str, PatchIndex] = {}
        self._stats: dict[str, Stain] = {}
        self._tissue_stains: dict[str, Stain] = {}

    @property
    def sha256(self) -> str:
        return self._sha256

    @property
    def native_mpp(self) -> float:
        return self.bank.mpp

    def to_mpp(self, triple: Triple, mpp: float, seed: int) -> Triple:
        base_mpp = triple.layout.mpp or triple.params.get("model_mpp")
        if not base_mpp:
            raise ValueError("the base triple has no µm/px to compose from")
        scale = base_mpp / self.bank.mpp
        h, w = (max(1, round(v * scale)) for v in triple.class_map.shape)
        layout = triple.layout.rescaled(w, h, self.bank.mpp)
        rng = np.random.default_rng(int(seed) % 2**64)  # a 64-bit seed may be negative
        reference = triple.params.get(STAIN_PARAM)
        image, inst_map, source = self.compose(triple.image, resample_instances(triple.inst_map, h, w),
                                               layout.xy(), layout.class_ids(), rng,
                                               None if reference is None else Stain.from_dict(reference))
        out = self._triple(image, inst_map, layout, {**triple.params, "largest_copy_um": largest_copy(source) *
                                                     self.bank.mpp})
        return out if abs(mpp - self.bank.mpp) < 1e-9 else at_mpp(out, mpp)

    def into_tile(self, tile_image: np.ndarray, tile_inst: np.ndarray, region: np.ndarray, layout: Layout,
                  base_inst: np.ndarray, seed: int) -> Triple:
        """An edit of a real tile at the bank's µm/px: inside `region`, the tile's own nuclei are replaced by
        nucleus-free tissue of the tile itself, and every point of `layout` (the edited layout, at the tile's
        size) inside the region gets a real nucleus of its class, sized like `base_inst` (the base model's
        instances at the tile's size) there; outside the region the tile is untouched. Instance k + 1 is
        point k's."""
        rng = np.random.default_rng(int(seed) % 2**64)  # a 64-bit seed may be negative
        h, w = tile_inst.shape
        xy, classes = layout.xy(), layout.class_ids()
        inside = np.array([bool(region[min(int(y), h - 1), min(int(x), w - 1)]) for x, y in xy], bool)
        slide = self._pick_slide(tile_image, classes, h * w, rng)
        own = [(tile_image.astype(np.float32), tile_inst > 0)]
        targets = targets_from_base(xy[inside], classes[inside], base_inst, self.nuclei, self.settings.size_to_bank)
        pastes = self._pastes(targets, slide, tile_image.astype(np.float32), rng)
        holes = cv2.dilate(((tile_inst > 0) & region).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        image = fill_holes(tile_image.astype(np.float32), holes & region, own, rng)
        inst_map = np.zeros((h, w), np.int32)
        ids = np.flatnonzero(inside) + 1
        self._paint(image, inst_map, pastes, ids, None)
        image = np.where(region[..., None], image, tile_image)
        return self._triple(np.clip(image, 0, 255).round().astype(np.uint8), inst_map, layout, {})

    def compose(self, base_image: np.ndarray, inst_up: np.ndarray, points_xy: np.ndarray, point_classes: np.ndarray,
                rng: np.random.Generator, stain: Stain | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image uint8, instance map, source map) at `inst_up`'s size from the base image (any size) and the
        base instances upsampled to the output; instance k + 1 is the nucleus of point k. The image takes the
        stain of a bank slide drawn at random, or with `stain` that one (stain.toward)."""
        h, w = inst_up.shape
        slide = self._pick_slide(base_image, point_classes, h * w, rng)
        guide = restain(resample_image(base_image, h, w), self._bank_stats(), self._slide_stats(slide))
        targets = targets_from_base(points_xy, point_classes, inst_up, self.nuclei, self.settings.size_to_bank)
        where = np.zeros((h, w), bool)
        for t in targets:
            where[min(int(t.y), h - 1), min(int(t.x), w - 1)] = True
        around_points = cv2.dilate(where.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        target_nuclei = (inst_up > 0) | around_points
        # a pasted nucleus is sized like the base's nucleus under its point, centred on the point
        pasted = [int(inst_up[min(int(t.y), h - 1), min(int(t.x), w - 1)]) for t in targets]
        covered = np.isin(inst_up, [i for i in pasted if i > 0]) | around_points
        s = self.settings
        background = quilt(self.bank, self._index(slide), guide, target_nuclei, covered, s.overlap, rng, s.weights,
                           s.nucleus_weight)
        pastes = self._pastes(targets, slide, background.image, rng)
        covered = np.zeros((h, w), bool)
        for p in pastes:
            out_win, crop_win = footprint(p, (h, w))
            covered[out_win] |= cv2.dilate(p.nucleus[crop_win].astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        holes = (cv2.dilate(background.nuclei.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0) & ~covered
        image = fill_holes(background.image, holes, self._donors(slide), rng)
        inst_map = np.zeros((h, w), np.int32)
        source = background.source.copy()
        self._paint(image, inst_map, pastes, np.arange(1, len(pastes) + 1), source)
        image = np.clip(image, 0, 255).round().astype(np.uint8)
        if stain is None:
            # the slides that suit a kind of layout share stains by chance (in CoNSeP the stroma and fat
            # slides are the yellowest), which the judge learnt as "generated" (docs/model.md, "The stain no
            # longer follows the tissue")
            drawn = self._slides[int(rng.integers(len(self._slides)))]
            image = toward(image, self._tissue_stain(slide), self._tissue_stain(drawn))
        else:
            image = toward(image, self._bank_stain(), stain)
        return image, inst_map, source

    def _pastes(self, targets: list, slide: str, background: np.ndarray, rng: np.random.Generator) -> list[Paste]:
        """A real nucleus for each target, preferably from `slide`, matched to the blurred `background`."""
        allowed = np.isin(self.nuclei.tile, self._slide_tiles[slide])
        blurred = cv2.GaussianBlur(background, (0, 0), 3.0)
        return [oriented(self.bank, self.nuclei, choose(t, self.nuclei, allowed, blurred, rng), t, rng)
                for t in targets]

    def _paint(self, image: np.ndarray, inst_map: np.ndarray, pastes: list[Paste], ids: np.ndarray,
               source: np.ndarray | None) -> None:
        """Blend the pastes in, larger first so a small nucleus stays whole on top of a large one."""
        order = np.argsort([-p.nucleus.sum() for p in pastes], kind="stable")
        for k in order:
            blend(image, inst_map, pastes[k], int(ids[k]))
            if source is not None:
                out_win, crop_win = footprint(pastes[k], inst_map.shape)
                source[out_win] = np.where(pastes[k].nucleus[crop_win], -(int(k) + 2), source[out_win])

    def _triple(self, image: np.ndarray, inst_map: np.ndarray, layout: Layout, params: dict) -> Triple:
        """Labels that follow the pasted nuclei: instance k + 1 is point k's, in point k's class."""
        present = set(np.unique(inst_map).tolist())
        inst_classes = {k + 1: int(c) for k, c in enumerate(layout.class_ids()) if k + 1 in present}
        missed = [k for k in range(len(layout.points)) if k + 1 not in inst_classes]
        params = {**params, "stages": ["base", self.name], "second_stage_sha256": self.sha256,
                  "output_mpp": self.bank.mpp, "missed_centroids": len(missed), "missed_indices": missed}
        return Triple(image, paint_classes(inst_map, inst_classes), inst_map, distance_map(inst_map), inst_classes,
                      layout, params)

    def _donors(self, slide: str) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(self.bank.tiles[t].image.astype(np.float32), self.bank.tiles[t].inst_map > 0)
                for t in self._slide_tiles[slide]]

    def save(self, folder: Path) -> dict:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self._bank_path is None:
            save_bank(self.bank, folder / BANK_NAME)
        else:  # the very bytes it was loaded from, so the checksum stays the one its triples recorded
            shutil.copyfile(self._bank_path, folder / BANK_NAME)
        record_checksum(folder / BANK_NAME)
        return {"name": self.name, "settings": asdict(self.settings)}

    def _index(self, slide: str) -> PatchIndex:
        if slide not in self._indexes:
            s = self.settings
            self._indexes[slide] = patch_index(self.bank, self._slide_tiles[slide], s.patch, s.stride, s.nucleus_weight)
        return self._indexes[slide]

    def _profile_of_slide(self, slide: str) -> np.ndarray:
        """Class mix (fractions), log density and mean colour of a slide's nuclei and tissue."""
        tiles = [self.bank.tiles[i] for i in self._slide_tiles[slide]]
        pixels = np.concatenate([t.image[::4, ::4].reshape(-1, 3) for t in tiles])
        return profile([c for t in tiles for c in t.inst_classes.values() if c > 0],
                       sum(t.inst_map.size for t in tiles) / len(tiles), len(tiles), pixels, len(self.bank.classes))

    def _pick_slide(self, base_image: np.ndarray, point_classes: np.ndarray, area: int,
                    rng: np.random.Generator) -> str:
        want = profile([int(c) for c in point_classes if c > 0], area, 1, base_image.reshape(-1, 3),
                       len(self.bank.classes))
        cost = np.abs(self._slide_profiles - want)
        cost[:, -4:-1] *= 0.2  # the base's colours are the least trustworthy part of it; how much is empty is not
        best = np.argsort(cost.sum(1))[:self.settings.slides]
        return self._slides[int(rng.choice(best))]

    def _slide_stats(self, slide: str) -> Stain:
        """Mean and spread of the slide's L*a*b* colours (every 4th pixel), empty ones included: the guide's
        colours, empty areas too, are moved by them."""
        if slide not in self._stats:
            lab = np.concatenate([lab_of(self.bank.tiles[i].image[::4, ::4]).reshape(-1, 3)
                                  for i in self._slide_tiles[slide]])
            self._stats[slide] = Stain(tuple(lab.mean(0).tolist()), tuple(lab.std(0).tolist()))
        return self._stats[slide]

    def _bank_stats(self) -> Stain:
        """The average slide's colour statistics: the stain the base model learnt from all of them."""
        return Stain.average([self._slide_stats(s) for s in self._slides])

    def _bank_stain(self) -> Stain:
        """The average of the bank's slides' tissue stains. An output asked for a reference stain is moved by the
        reference's difference from it, so it keeps its slide's offset from the average: outputs vary around
        the reference as a lab's slides vary around its mean. Moving each slide's own stain onto the reference
        made every output of a source one exact colour, which the judge found (docs/model.md)."""
        return Stain.average([self._tissue_stain(s) for s in self._slides])

    def _tissue_stain(self, slide: str) -> Stain:
        """The stain of a slide's stained pixels (Stain.of its tiles)."""
        if slide not in self._tissue_stains:
            self._tissue_stains[slide] = Stain.of([self.bank.tiles[i].image for i in self._slide_tiles[slide]])
        return self._tissue_stains[slide]


def profile(classes: list[int], area_per_tile: float, n_tiles: int, pixels: np.ndarray, n_classes: int) -> np.ndarray:
    """What a slide (or a layout with its base image) is like: class mix, log density, mean colour, and the
    fraction of empty (unstained) pixels, which tells fat and lumina from tissue."""
    counts = np.bincount(np.asarray(classes, np.int64), minlength=n_classes)[1:].astype(np.float64)
    fractions = counts / max(counts.sum(), 1)
    density = np.log1p(counts.sum() / n_tiles / area_per_tile * 1e4)  # nuclei per 10⁴ px
    empty = float((pixels.min(1) > EMPTY_LEVEL).mean())
    return np.concatenate([fractions, [density], pixels.mean(0) / 255, [empty]])


def largest_copy(source: np.ndarray) -> int:
    """Side in px of the largest connected region copied unchanged from one place of one training tile (the
    square root of its area; pasted nuclei and quilt patches each count as their own copies)."""
    regions = connected(source - source.min() + 1, background=0, connectivity=1)
    sizes = np.bincount(regions.ravel())[1:]
    return int(np.sqrt(sizes.max())) if len(sizes) else 0


def load(stage_folder: Path, spec: dict, context: StageContext) -> TextureStage:
    """The registry's loader: the bank in `stage_folder`, checked against its checksum and the base model's classes."""
    path = Path(stage_folder) / BANK_NAME
    try:
        sha = verified_sha256(path, context.trust_unverified)
    except FileNotFoundError:
        raise BankError(f"{path}: missing; the texture stage keeps its bank in {BANK_NAME}") from None
    except ValueError as e:
        raise BankError(str(e)) from None
    bank = load_bank(path)
    classes = list(context.classes)
    if bank.classes != classes:
        raise BankError(f"{path}: bank of classes {bank.classes}, but the model's are {classes}")
    try:
        settings = TextureSettings.from_dict(spec.get("settings", {}))
    except (TypeError, ValueError) as e:
        raise BankError(f"{Path(stage_folder).parent / 'config.json'}: bad texture settings ({e})") from None
    return TextureStage(bank, settings, sha, path)

