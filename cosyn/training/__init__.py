"""Training and fine-tuning: `train(TrainConfig)` runs (or resumes) a run folder, and
`export_checkpoint` turns its latest EMA weights into a loadable pipeline folder.

- config: TrainConfig, every knob of a run; setup: data, model and run state before the first step
- trainer: the loop; loss: the joint loss; schedule: learning rate and time budget
- checkpoints: save, resume and export; stopping: signals become save-and-stop
- class_mapping, previews, status, model_card: fine-tuning to new classes, preview grids,
  the status file the studio polls, the exported model card

Import from the modules.
"""
