"""The refiner stage: base triple at the model's µm/px → image at the layout's µm/px (docs/model.md)."""
