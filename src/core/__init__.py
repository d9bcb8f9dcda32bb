"""reportguard.core: the contract every other layer shares. No torch, no onnxruntime (tests/test_layers.py).

Where a change belongs:

- labels.py: the label schema (MODEL_LABELS, ALL_LABELS, PROB_COLUMNS); credentials.py: the
  credential rule and `with_derived_labels`;
- normalize.py: the one text normaliser and `listing_text(_with_offsets)`, what the model reads;
  encoding.py: text -> token ids, windows, length-bucketed batches;
- bundle_format.py: bundle.json (`BundleMeta`): read, validate, hash, seal; calibration.py: the
  temperature sigmoid and decision cuts;
- records.py, columns.py: reading platform exports; paths.py: the project home; atomic.py:
  temp-then-rename writes; errors.py: the errors the CLI reports in one line;
- phrases.py, evidence_spans.py, tfidf.py: the lexicon, highlighting, the TF-IDF baseline.
"""
