"""The checkpoints the studio offers, and one loaded pipeline per checkpoint."""

from __future__ import annotations

import base64
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from cosyn.core.classes import CONSEP, TISSUES
from cosyn.core.layout import MAX_CANVAS
from cosyn.io.fileio import CHECKSUMS_NAME
from cosyn.model.checkpoint import CONFIG_NAME, WEIGHTS_NAME, CheckpointError, PipelineConfig, read_pipeline_config
from cosyn.model.pipeline import CoSynPipeline
from cosyn.model.text import DEFAULT_TEXT_ENCODER, TextEncoder
from cosyn.studio.paths import PathError, check_name

CARD_NAME = "MODEL_CARD.md"
FALLBACK_MAX_SIDE = 1024  # canvas limit while no model is loaded


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: Path

    @property
    def card(self) -> str:
        card = self.path / CARD_NAME
        if not card.is_file():
            return f"*`{self.name}` has no {CARD_NAME}.*"
        return unlink_relative(inline_images(card.read_text(), self.path))

    def config(self) -> PipelineConfig:
        """The checkpoint's config without loading its weights (for palettes and limits)."""
        return read_pipeline_config(self.path)

    @property
    def unverified(self) -> bool:
        """Its weights have no checksum recorded in checksums.json (loading then checks it, and says more)."""
        try:
            recorded = json.loads((self.path / CHECKSUMS_NAME).read_text())
        except (OSError, ValueError):
            return True
        return not isinstance(recorded, dict) or WEIGHTS_NAME not in recorded


def unverified_warning(info: ModelInfo, trusted: bool) -> str:
    """What the page says about a checkpoint without a recorded checksum ('' for one with)."""
    if not info.unverified:
        return ""
    risk = (f"⚠ `{info.name}` has no recorded checksum ({CHECKSUMS_NAME}), so damage to its weights or their "
            "replacement cannot be detected.")
    if trusted:
        return f"{risk} It is loaded because the studio was started with --trust-unverified."
    return (f"{risk} The studio loads it only when started with --trust-unverified; if you trust the files, record "
            f"a checksum with `cosyn checksum {info.path}`.")


def list_models(root: Path, default: str = "default") -> list[ModelInfo]:
    """Checkpoint folders under `root` (config + weights present), `default` first."""
    if not root.is_dir():
        return []
    found = [ModelInfo(d.name, d) for d in root.iterdir()
             if d.is_dir() and not d.name.startswith(".") and (d / CONFIG_NAME).is_file()
             and (d / WEIGHTS_NAME).is_file()]
    return sorted(found, key=lambda m: (m.name != default, m.name))


def no_model_message(root: Path) -> str:
    return (f"**No checkpoint available** in `{root}/`. The canvas works; to generate, train one in the "
            f"*Train* tab (it appears here when exported), or from a shell:\n\n"
            f"`python -m cosyn train --data DATASET --out runs/NAME` then "
            f"`python -m cosyn export-checkpoint runs/NAME --out {root}/default`")


@dataclass
class ModelView:
    """What the page needs to know of the selected model (or of none: the fallback palette)."""

    classes: list[str]
    tissues: list[str]
    side_limit: int  # largest canvas side in layout pixels
    mpp: float | None  # the model's scale, which a layout without one is at


def model_view(cache: PipelineCache, name: str | None, layout_mpp: float | None) -> ModelView:
    """The model's classes, tissues and canvas limit, from its config alone (no weights loaded)."""
    if not name:
        return ModelView(CONSEP.to_list(), list(TISSUES), FALLBACK_MAX_SIDE, None)
    cfg = cache.info(name).config()
    return ModelView(list(cfg.classes), list(cfg.tissues), max_side(cfg.max_canvas, cfg.mpp, layout_mpp), cfg.mpp)


def max_side(model_max_canvas: int, model_mpp: float, layout_mpp: float | None) -> int:
    """The largest canvas side, in layout pixels, that the model samples within its limit."""
    factor = model_mpp / layout_mpp if layout_mpp else 1.0
    return min(MAX_CANVAS, int(model_max_canvas * factor))


class PipelineCache:
    """Pipelines loaded once per checkpoint (reloaded when its weights change on disk), all
    sharing one text encoder per encoder name; the oldest is dropped beyond `capacity`. A checkpoint
    without a recorded checksum loads only with `trust_unverified` (the studio's --trust-unverified)."""

    def __init__(self, root: Path, capacity: int = 3, trust_unverified: bool = False) -> None:
        self.root, self.capacity, self.trust_unverified = Path(root), capacity, trust_unverified
        self._pipes: OrderedDict[Path, tuple[float, CoSynPipeline]] = OrderedDict()
        self._texts: dict[str, TextEncoder] = {}
        self._lock = threading.Lock()

    def info(self, name: str) -> ModelInfo:
        try:
            name = check_name(name, "checkpoint")
        except PathError as e:
            raise CheckpointError(str(e)) from None
        available = {m.name: m for m in list_models(self.root)}
        if name not in available:
            listed = ", ".join(available) or "none"
            raise CheckpointError(f"checkpoint {name!r} is not in {self.root}/ (available: {listed})")
        return available[name]

    def text_encoder(self, name: str = DEFAULT_TEXT_ENCODER) -> TextEncoder:
        with self._lock:
            if name not in self._texts:
                self._texts[name] = TextEncoder(name)
            return self._texts[name]

    def get(self, name: str) -> CoSynPipeline:
        info = self.info(name)
        stamp = (info.path / WEIGHTS_NAME).stat().st_mtime
        with self._lock:
            cached = self._pipes.get(info.path)
            if cached and cached[0] == stamp:
                self._pipes.move_to_end(info.path)
                return cached[1]
        text = self.text_encoder(info.config().text_encoder)
        pipe = CoSynPipeline.from_pretrained(info.path, text_encoder=text, trust_unverified=self.trust_unverified)
        with self._lock:
            self._pipes[info.path] = (stamp, pipe)
            self._pipes.move_to_end(info.path)
            while len(self._pipes) > self.capacity:
                self._pipes.popitem(last=False)
        return pipe


IMAGE_LINK = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
INLINE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}
MAX_INLINE_BYTES = 2 << 20


def inline_images(markdown: str, folder: Path) -> str:
    """The card's relative image links (`![grid](evaluation_grid.jpg)`) as data URIs: the studio
    serves no checkpoint files, so a relative link would 404. Links that leave the folder, other
    types and large files stay as they are."""
    root = folder.resolve()

    def inline(m: re.Match) -> str:
        target = (root / m.group(2)).resolve()
        kind = INLINE_TYPES.get(target.suffix.lower())
        if (kind is None or not target.is_relative_to(root) or not target.is_file()
                or target.stat().st_size > MAX_INLINE_BYTES):
            return m.group(0)
        return f"![{m.group(1)}](data:{kind};base64,{base64.b64encode(target.read_bytes()).decode()})"

    return IMAGE_LINK.sub(inline, markdown)


LINK = re.compile(r"(?<!!)\[([^\]]*)\]\(([^)\s]+)\)")  # [text](target), not an image
OPEN_SCHEMES = ("http://", "https://", "mailto:", "#")


def unlink_relative(markdown: str) -> str:
    """The card's links to files beside it (`[docs/limits.md](../../docs/limits.md)`) as plain text: the
    studio serves no files of the repository, so such a link would open an error page. Web links stay."""
    def plain(m: re.Match) -> str:
        text, target = m.group(1), m.group(2)
        if target.lower().startswith(OPEN_SCHEMES):
            return m.group(0)
        return text if Path(target).name in text else f"{text} ({Path(target).name})"

    return LINK.sub(plain, markdown)
