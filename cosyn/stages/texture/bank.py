"""The texture bank: real training tiles at their native µm/px, with their nucleus annotations, as the
texture stage's only source of pixels.

On disk it is one safetensors file (nothing unpickles): every tile's image as JPEG bytes (quality 95,
so the bank stays a few MB while re-encoding adds less than the data's own JPEG did) and its instance
map as 16-bit PNG bytes, each instance's class, and the nucleus catalogue (nuclei.py). The metadata
header names the tiles, their source slides, the µm/px and the classes, so a bank says where its pixels
came from.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from cosyn.io.fileio import atomic_write
from cosyn.stages.base import StageError
from cosyn.stages.texture.nuclei import Nuclei, nuclei_of

BANK_NAME = "texture_bank.safetensors"
JPEG_QUALITY = 95
MAX_BANK_BYTES = 25 * 2**20  # the default's bank must stay small enough to ship in git


class BankError(StageError):
    """A texture bank that cannot be built or read; the message names the file and the problem."""


@dataclass
class BankTile:
    name: str
    source: str  # the slide (source tile) it was cut from
    image: np.ndarray  # (H, W, 3) uint8
    inst_map: np.ndarray  # (H, W) int32
    inst_classes: dict[int, int]  # instance id -> class id (0 = no nucleus class)


@dataclass
class TextureBank:
    tiles: list[BankTile]
    mpp: float
    classes: list[str]
    provenance: str = ""
    nuclei: Nuclei | None = None  # the catalogue; computed from the tiles when absent

    def catalogue(self) -> Nuclei:
        if self.nuclei is None:
            self.nuclei = nuclei_of(self.tiles)
        return self.nuclei

    def sources(self) -> list[str]:
        return sorted({t.source for t in self.tiles})


def bank_from_samples(samples: Sequence, classes: list[str], provenance: str,
                      max_bytes: int = MAX_BANK_BYTES) -> TextureBank:
    """A bank of the given samples (`cosyn.data.Sample`, of one µm/px: the finest among them, to which the
    others are resampled by the caller); the caller picks the training split, so no validation tile ever
    lends its pixels to an output that is judged against it. Past `max_bytes` (estimated from the tiles'
    encoded sizes) tiles are taken round-robin over the source slides, so every slide keeps a share."""
    if not samples:
        raise BankError("no tiles to build a texture bank from")
    mpps = {round(float(s.mpp), 6) for s in samples if s.mpp is not None}
    if len(mpps) > 1:
        raise BankError(f"the bank's tiles must share one µm/px, not {sorted(mpps)}")
    by_source: dict[str, list] = {}
    for s in samples:
        by_source.setdefault(s.source or s.name, []).append(s)
    rounds = max(map(len, by_source.values()))
    order = [queue[i] for i in range(rounds) for queue in by_source.values() if i < len(queue)]
    tiles, used = [], 0
    for s in order:
        cost = len(_encode(s.image, "JPEG")) + len(_encode(s.inst_map, "PNG"))
        if used + cost > max_bytes:
            break
        used += cost
        table = dict(zip(s.inst_ids.tolist(), s.inst_classes.tolist(), strict=True))
        tiles.append(BankTile(s.name, s.source or s.name, s.image, s.inst_map.astype(np.int32), table))
    return TextureBank(tiles, float(mpps.pop()) if mpps else 0.25, list(classes), provenance)


def _encode(array: np.ndarray, fmt: str) -> np.ndarray:
    buf = io.BytesIO()
    if fmt == "JPEG":
        Image.fromarray(array).save(buf, "JPEG", quality=JPEG_QUALITY)
    else:
        Image.fromarray(array.astype(np.uint16)).save(buf, "PNG")
    return np.frombuffer(buf.getvalue(), np.uint8)


def _decode(blob: np.ndarray, start: int, end: int) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(blob[start:end].tobytes())))


def _packed(chunks: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = np.array([len(c) for c in chunks])
    ends = np.cumsum(lengths)
    return torch.from_numpy(np.concatenate(chunks)), torch.from_numpy(np.stack([ends - lengths, ends], 1))


def save_bank(bank: TextureBank, path: Path) -> None:
    """Write the bank to `path` atomically; refuse one over MAX_BANK_BYTES or with ids PNG cannot hold."""
    images, insts, tables = [], [], []
    for t in bank.tiles:
        if t.inst_map.max(initial=0) > 65535:
            raise BankError(f"{t.name}: more than 65535 instance ids do not fit the bank's 16-bit maps")
        images.append(_encode(t.image, "JPEG"))
        insts.append(_encode(t.inst_map, "PNG"))
        tables.append(np.array(sorted(t.inst_classes.items()), np.int32).reshape(-1, 2))
    image_blob, image_spans = _packed(images)
    inst_blob, inst_spans = _packed(insts)
    table_rows = np.cumsum([0] + [len(tb) for tb in tables])
    tensors = {"image_jpeg": image_blob, "image_spans": image_spans, "inst_png": inst_blob, "inst_spans": inst_spans,
               "inst_classes": torch.from_numpy(np.concatenate(tables)),
               "inst_class_rows": torch.from_numpy(table_rows.astype(np.int64)),
               **{f"nuclei.{k}": torch.from_numpy(v) for k, v in bank.catalogue().to_arrays().items()}}
    size = sum(v.numel() * v.element_size() for v in tensors.values())
    if size > MAX_BANK_BYTES:
        raise BankError(f"{path}: the bank would take {size / 2**20:.1f} MB, over the {MAX_BANK_BYTES / 2**20:.0f} MB "
                        "limit; build it from fewer tiles")
    meta = {"format": "cosyn-texture-bank", "version": "1", "mpp": str(bank.mpp), "classes": json.dumps(bank.classes),
            "names": json.dumps([t.name for t in bank.tiles]), "sources": json.dumps([t.source for t in bank.tiles]),
            "provenance": bank.provenance}
    atomic_write(Path(path), lambda tmp: save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=meta))
    Path(path).chmod(0o644)  # shipped inside checkpoints that colleagues read


def load_bank(path: Path) -> TextureBank:
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        t = {k: v.numpy() for k, v in load_file(path).items()}
        if meta.get("format") != "cosyn-texture-bank":
            raise BankError(f"{path}: not a cosyn texture bank")
        names, sources = json.loads(meta["names"]), json.loads(meta["sources"])
        tiles = []
        for i, (name, source) in enumerate(zip(names, sources, strict=True)):
            image = _decode(t["image_jpeg"], *t["image_spans"][i])
            inst = _decode(t["inst_png"], *t["inst_spans"][i]).astype(np.int32)
            rows = t["inst_classes"][t["inst_class_rows"][i]:t["inst_class_rows"][i + 1]]
            if image.shape[:2] != inst.shape or image.ndim != 3:
                raise BankError(f"{path}: tile {name} has image {image.shape} but instances {inst.shape}")
            tiles.append(BankTile(name, source, image, inst, {int(a): int(b) for a, b in rows}))
        nuclei = Nuclei.from_arrays({k.removeprefix("nuclei."): v for k, v in t.items() if k.startswith("nuclei.")})
        return TextureBank(tiles, float(meta["mpp"]), list(json.loads(meta["classes"])), meta.get("provenance", ""),
                           nuclei)
    except FileNotFoundError:
        raise BankError(f"{path}: missing; the texture stage keeps its bank in {BANK_NAME}") from None
    except BankError:
        raise
    except (SafetensorError, OSError, KeyError, IndexError, ValueError, json.JSONDecodeError) as e:
        raise BankError(f"{path}: unreadable texture bank ({e})") from None
