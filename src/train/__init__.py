"""reportguard.train: data, fine-tuning, calibration, export and evaluation. torch lives here only.

`reportguard train` is pipeline.train(), which reads as its steps: data (datasets.py, corpus.py,
model.py) -> fine-tune (finetune.py) -> calibrate (calibrate.py) -> export (export.py) -> gate
(gate.py) -> evaluate (through serve's Bundle; report.py, card.py) -> register (tracking.py).
config.py: the typed experiment config. backbone/: the offline e5-small backbone. bench/: speed,
the int8 study and scale runs. evaluate.py: `reportguard evaluate`.
"""
