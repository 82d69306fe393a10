"""Where in frequency a refiner changes the image, against where real 40x detail lives.

    python benchmarks/refiner_residual_spectrum.py --refiner runs/gan_d/refiner [--tiles 16]

On the cached base outputs of `refiner_realism.py` (OUT/base_val): the refiner's residual (refined minus
bicubic ×2) and real detail (a real validation tile minus its 0.5 µm/px version upsampled bicubically).
For each, the mean power spectrum (grey level), averaged over rings of equal radius; also the network's
residual before the image is clipped to 0..255, and the residual's mean colour. A refiner that only adds
texture has its energy where real detail has it (high radii) and no colour shift.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
from refiner_realism import bicubic, refined

from cosyn.data.dataset import resample_sample, split_by_source
from cosyn.data.formats import read_dataset
from cosyn.refiner.stage import Refiner

RADII = (4, 16, 32, 64, 96, 128)  # of a 256² spectrum: wavelengths 64, 16, 8, 4, 2.7, 2 px


def radial_power(residuals: list[np.ndarray]) -> np.ndarray:
    """Mean power spectrum of the grey residuals, averaged over rings of integer radius."""
    power = np.mean([np.abs(np.fft.fftshift(np.fft.fft2(r.mean(-1) - r.mean()))) ** 2 for r in residuals], 0)
    yy, xx = np.indices(power.shape)
    ring = np.hypot(yy - power.shape[0] // 2, xx - power.shape[1] // 2).astype(int)
    return np.bincount(ring.ravel(), power.ravel()) / np.bincount(ring.ravel())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--refiner", required=True)
    ap.add_argument("--data", default="../shared/data/consep_patched")
    ap.add_argument("--base", default="runs/realism/base_val", help="refiner_realism.py's cached base outputs")
    ap.add_argument("--tiles", type=int, default=16)
    args = ap.parse_args()
    ref = Refiner.from_pretrained(args.refiner)
    k = len(ref.classes)
    bases = [dict(np.load(p)) for p in sorted(Path(args.base).glob("*.npz"))[:args.tiles]]
    samples = read_dataset(args.data)
    _, val_idx = split_by_source(samples, 0.15, 0)
    reals = [samples[i] for i in val_idx[:args.tiles]]
    raw: list[np.ndarray] = []  # the network's residual before the image is clipped to 0..255
    ref.net.register_forward_hook(lambda _m, _i, out: raw.append(out[0].permute(1, 2, 0).float().numpy() * 127.5))
    residuals = [refined(ref, b, k, i)["image"].astype(np.float32) - bicubic(b, k)["image"].astype(np.float32)
                 for i, b in enumerate(bases)]
    detail = [s.image.astype(np.float32) - cv2.resize(resample_sample(s, 0.5).image, (s.width, s.height),
                                                      interpolation=cv2.INTER_CUBIC).astype(np.float32)
              for s in reals]
    p_ref, p_raw, p_real = radial_power(residuals), radial_power(raw), radial_power(detail)
    print(json.dumps({
        "refiner": args.refiner, "tiles": len(bases),
        "power_ratio_refiner_to_real_detail_by_radius": {r: round(float(p_ref[r] / p_real[r]), 3) for r in RADII},
        "the_same_before_clipping": {r: round(float(p_raw[r] / p_real[r]), 3) for r in RADII},
        "residual_mean_rgb": [round(float(v), 2) for v in np.mean([r.mean((0, 1)) for r in residuals], 0)],
    }, indent=1))


if __name__ == "__main__":
    main()
