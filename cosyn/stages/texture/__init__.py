"""The texture stage: real tissue from a bank of training tiles, quilted and with real nuclei pasted at the
layout's centroids (see stage.py)."""

from cosyn.stages.texture.bank import BANK_NAME, BankError, TextureBank, bank_from_samples, load_bank, save_bank
from cosyn.stages.texture.stage import TextureSettings, TextureStage, largest_copy, load

__all__ = ["BANK_NAME", "BankError", "TextureBank", "TextureSettings", "TextureStage", "bank_from_samples",
           "largest_copy", "load", "load_bank", "save_bank"]
