"""reportguard.serve: scoring with onnxruntime and tokenizers; never imports train or torch.

bundle.py: a checked bundle as sessions (`Bundle.predict_proba`); score.py: the batch scorer;
evidence.py: why a listing was flagged; outputs.py: run files; sellers.py: seller roll-ups;
report/: the notice's form and page (`reportguard report`); spark_engine.py: the scorer on
Spark; pyfunc.py: a bundle as an MLflow model.
"""
