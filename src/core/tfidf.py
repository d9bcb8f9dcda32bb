"""The TF-IDF baseline: character 1-3-gram TF-IDF, one balanced logistic regression per label.

Shared by two layers, so it lives here: training reports it beside the model
(src/train/baselines.py, the report, `reportguard evaluate`), and the review tool ranks
likely-mislabelled corpus rows with its out-of-fold probabilities (src/review/noise.py), which
must not import the training layer. scikit-learn is imported when a model is fitted, not here
(the `train` and `review` extras both provide it).
"""
from __future__ import annotations

import numpy as np


def best_f1_threshold(y_true: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold that maximises F1 for one label (ties: the higher threshold)."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(y_true, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best = int(np.argmax(f1[:-1])) if len(thresholds) else 0
    return float(thresholds[best]) if len(thresholds) else 0.5


class TfidfBaseline:
    """fit / predict_proba / predict, scikit-learn style; learned attributes end with `_`."""

    def __init__(self, ngram_range: tuple[int, int] = (1, 3), C: float = 4.0, max_features: int = 200_000):
        self.ngram_range = ngram_range
        self.C = C
        self.max_features = max_features

    def fit(self, texts: list[str], y: np.ndarray) -> "TfidfBaseline":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        self.vectorizer_ = TfidfVectorizer(analyzer="char", ngram_range=self.ngram_range, sublinear_tf=True,
                                           min_df=2, max_features=self.max_features)
        x = self.vectorizer_.fit_transform(texts)
        from sklearn.dummy import DummyClassifier

        # A label that never (or always) occurs in train gets a constant prior, not a crash.
        self.models_ = [(LogisticRegression(C=self.C, class_weight="balanced", max_iter=2000)
                         if len(set(y[:, k])) > 1 else DummyClassifier(strategy="prior")).fit(x, y[:, k])
                        for k in range(y.shape[1])]
        self.thresholds_ = np.full(y.shape[1], 0.5)
        return self

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        x = self.vectorizer_.transform(texts)
        return np.column_stack([m.predict_proba(x)[:, -1] if len(m.classes_) > 1 else np.full(x.shape[0], float(m.classes_[0]))
                                for m in self.models_])

    def tune_thresholds(self, texts: list[str], y: np.ndarray) -> "TfidfBaseline":
        scores = self.predict_proba(texts)
        self.thresholds_ = np.array([best_f1_threshold(y[:, k], scores[:, k]) for k in range(y.shape[1])])
        return self

    def predict(self, texts: list[str]) -> np.ndarray:
        return (self.predict_proba(texts) >= self.thresholds_).astype(np.int8)
