"""A second estimator of decodability: cross-validated linear-probe accuracy of the concept.

kNN TD asks whether concepts form local clusters; a linear probe asks whether they are linearly
separable. Standardised features, multinomial logistic regression (scikit-learn), stratified
k-fold; returns mean per-concept (balanced) accuracy per layer.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from conceptlens.decodability.knn import as_layers, encode_labels


def probe_decodability(acts, labels: Sequence, folds: int = 5, seed: int = 0, max_iter: int = 500) -> np.ndarray:
    """Balanced cross-validated accuracy of a linear probe, per layer: `[layers]`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    array = as_layers(acts)
    codes, _ = encode_labels(labels, array.shape[1], k=folds - 1)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = []
    for points in array:
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, C=0.1))
        scores.append(cross_val_score(probe, points, codes, cv=splitter, scoring="balanced_accuracy").mean())
    return np.array(scores)
