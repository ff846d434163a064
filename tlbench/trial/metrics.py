"""Classification metrics from predictions, in plain numpy (no scikit-learn)."""

from __future__ import annotations

import numpy as np


def confusion(labels: np.ndarray, preds: np.ndarray, n_classes: int) -> np.ndarray:
    """[true class, predicted class] -> count."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (labels, preds), 1)
    return matrix


def summarize(labels: np.ndarray, preds: np.ndarray, n_classes: int) -> dict:
    """Accuracy, per-class precision/recall/F1/support, their macro and weighted means, the confusion matrix.

    A class never predicted has precision 0, as scikit-learn's zero_division=0."""
    matrix = confusion(labels, preds, n_classes)
    tp = np.diag(matrix).astype(float)
    support = matrix.sum(axis=1).astype(float)
    predicted = matrix.sum(axis=0).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    present = support > 0
    weights = support / support.sum() if support.sum() else support
    out = {
        "acc": float(tp.sum() / max(len(labels), 1)),
        "confusion": matrix.tolist(),
        "per_class": {
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "f1": f1.tolist(),
            "support": support.astype(int).tolist(),
        },
    }
    for name, values in (("precision", precision), ("recall", recall), ("f1", f1)):
        out[f"{name}_macro"] = float(values[present].mean()) if present.any() else 0.0
        out[f"{name}_weighted"] = float((values * weights).sum())
    return out
