"""The second stage: base triple at the model's µm/px → triple at the layout's µm/px (docs/model.md,
"Refiner"). `Refiner` is the learned stage a checkpoint may carry; `Upsampler` is what runs without one."""
