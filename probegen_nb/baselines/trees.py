"""StatNN's gradient-boosted-tree head (scikit-learn): fit on the train models' statistics, evaluated after every
boosting stage so that `experiment.train` selects the stage count on the validation split, as it selects an epoch
(`baselines.statnn.TreesLearner` is the `Learner` around it).

Trees are not torch modules: their run folder has no checkpoints (scikit-learn keeps models as pickles, which this
project does not write), only the config, metrics and the test models' statistics and predictions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class StatNNTrees:
    """A fitted ensemble and the number of its stages the run uses (its best-validation stage count)."""

    estimator: Any  # sklearn.ensemble.GradientBoostingClassifier or GradientBoostingRegressor
    n_classes: int | None  # the task's classes (outputs get one column each), None for a scalar label
    n_stages: int

    def staged_outputs(self, features: np.ndarray) -> Iterator[np.ndarray]:
        """[N, d_out] outputs after each boosting stage: class probabilities (a column per class of the task, 0 for a
        class absent from the train split) or the regressed scalar."""
        if len(features) == 0:
            for _ in range(self.estimator.n_estimators_):
                yield np.zeros((0, self.n_classes or 1), dtype=np.float32)
            return
        if self.n_classes is None:
            for out in self.estimator.staged_predict(features):
                yield out[:, None].astype(np.float32)
            return
        for proba in self.estimator.staged_predict_proba(features):
            full = np.zeros((len(features), self.n_classes), dtype=np.float32)
            full[:, self.estimator.classes_] = proba
            yield full

    def predict(self, features: np.ndarray) -> torch.Tensor:
        """[N, d_out] outputs of the first `n_stages` stages."""
        for stage, out in enumerate(self.staged_outputs(features), start=1):
            if stage == self.n_stages:
                return torch.from_numpy(out)
        raise AssertionError(f"n_stages {self.n_stages} > the {self.estimator.n_estimators_} stages fitted")

    def _trees(self) -> np.ndarray:
        return self.estimator.estimators_[: self.n_stages].ravel()  # [n_stages · trees per stage]

    def n_nodes(self) -> int:
        """Nodes of the trees used (a split's feature and threshold, or a leaf's value): the head's size."""
        return int(sum(t.tree_.node_count for t in self._trees()))

    def comparisons(self, features: np.ndarray) -> int:
        """Threshold comparisons to predict one model (features [1, F]): the split nodes on its path in every tree
        used (the trees' FLOPs; scikit-learn's trees are outside torch's flop counter)."""
        x = np.asarray(features, dtype=np.float32)[:1]
        return int(sum(t.decision_path(x).nnz - 1 for t in self._trees()))


def fit_trees(n_trees: int, learning_rate: float, depth: int, features: np.ndarray, labels: np.ndarray,
              n_classes: int | None, seed: int) -> StatNNTrees:
    """Gradient-boosted trees on features [N, F]: log-loss for classes, squared error for scalars (the losses of
    the torch loop). Using all `n_trees` stages until the caller selects fewer."""
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor  # 1 s to import: only here

    kind = GradientBoostingRegressor if n_classes is None else GradientBoostingClassifier
    estimator = kind(n_estimators=n_trees, learning_rate=learning_rate, max_depth=depth, random_state=seed)
    estimator.fit(features, labels)
    return StatNNTrees(estimator, n_classes, n_trees)
