"""StatNN (Unterthiner et al. 2020, "Predicting Neural Network Accuracy from Weights"): each model is represented by
seven statistics of each of its weight and bias tensors, then predicted by gradient-boosted trees (`baselines.trees`,
fit outside the torch loop) or by the probing predictor's MLP on the standardised statistics (this module).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from probegen_nb.baselines.base import Baseline, mean_std, rows_params, shared_param_shapes
from probegen_nb.baselines.trees import StatNNTrees, fit_trees
from probegen_nb.core.zoo import AnyZoo
from probegen_nb.methods.learner import init_from
from probegen_nb.methods.predictor import Predictor

STATISTICS = ("mean", "var", "q0", "q25", "q50", "q75", "q100")  # per tensor, in this order (the paper's section 4)
QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class StatNNConfig:
    """StatNN's hyper-parameters. The statistics are the paper's; its GBMs were LightGBM with hyper-parameters
    tuned per data set, which are not reproduced here: the tree settings are scikit-learn's defaults for
    `GradientBoostingClassifier/Regressor`. The MLP head is the probing predictor (`RunConfig.hidden`, `n_hidden`)
    under the probing protocol (`RunConfig.lr`, `epochs`, `batch_size`)."""

    kind: ClassVar[str] = "statnn"
    head: Literal["gbt", "mlp"] = "gbt"  # "gbt": gradient-boosted trees (the paper's GBM); "mlp": the predictor
    n_trees: int = 100  # boosting stages (scikit-learn's default); the run keeps the best-validation stage count
    tree_learning_rate: float = 0.1  # shrinkage (scikit-learn's default; LightGBM's too)
    tree_depth: int = 3  # depth of each tree (scikit-learn's default)
    std_floor: float = 1e-5  # MLP head: a feature std below this counts as 1 (NFN's normalisation, Zhou et al. 2023)

    def __post_init__(self) -> None:
        if self.head not in ("gbt", "mlp"):
            raise ValueError(f"StatNNConfig.head {self.head!r} is not one of 'gbt', 'mlp'")
        if self.n_trees < 1 or self.tree_depth < 1 or not self.tree_learning_rate > 0:
            raise ValueError(f"StatNNConfig needs n_trees >= 1, tree_depth >= 1, tree_learning_rate > 0; got "
                             f"{self.n_trees}, {self.tree_depth}, {self.tree_learning_rate}")

    @property
    def fits_trees(self) -> bool:
        """Whether this head trains outside the torch loop (scikit-learn's trees)."""
        return self.head == "gbt"

    @property
    def label(self) -> str:
        """What a progress bar calls a run of it."""
        return f"{self.kind} {self.head}"

    def build(self, train_zoo: AnyZoo, d_out: int, hidden: int, n_hidden: int,
              generator: torch.Generator) -> StatNN | TreesLearner:
        """The MLP head, its feature standardisation fitted on `train_zoo` (the run's train models); or the trees,
        fitted when `train()` starts."""
        names = tuple(shared_param_shapes(train_zoo))
        if self.fits_trees:
            return TreesLearner(self, names, train_zoo.task.n_classes, train_zoo.device)
        with init_from(generator):  # the module's init: one draw of the run's generator
            mean, std = mean_std(zoo_statistics(train_zoo, names), self.std_floor)
            return StatNN(names, mean, std, d_out, hidden, n_hidden)


class StatNN(Baseline):
    """Statistics of each tensor [B, 7·T] (T tensors), standardised by the train split's, into the predictor."""

    feature_mean: torch.Tensor  # buffers, registered in __init__
    feature_std: torch.Tensor

    def __init__(self, names: Sequence[str], mean: torch.Tensor, std: torch.Tensor, d_out: int, hidden: int,
                 n_hidden: int) -> None:
        super().__init__()
        self.names = tuple(names)
        self.rep_dim = len(STATISTICS) * len(self.names)
        self.register_buffer("feature_mean", mean.clone())  # [7·T]
        self.register_buffer("feature_std", std.clone())  # [7·T]
        self.predictor = Predictor(self.rep_dim, d_out, hidden, n_hidden)
        self.fixed_representation = True

    def represent(self, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return (layer_statistics(params, self.names) - self.feature_mean) / self.feature_std


class TreesLearner:
    """StatNN's trees as a `methods.learner.Learner`: fitted once by scikit-learn when the run starts, one boosting
    stage per epoch (`n_trees` epochs), the best-validation stage count kept as an epoch is. Its state is that count:
    the trees themselves are kept only as pickles, which this project does not write, so no checkpoints."""

    queries = 0  # the statistics read the weights and ask the models nothing
    fixed_representation = True  # the statistics
    saves_checkpoints = False

    def __init__(self, config: StatNNConfig, names: Sequence[str], n_classes: int | None,
                 device: torch.device) -> None:
        self.config, self.names, self.n_classes, self.device = config, tuple(names), n_classes, device
        self.trees: StatNNTrees | None = None
        self.n_stages = config.n_trees
        self.training = True
        self._train_zoo: AnyZoo | None = None
        self._train_features = np.zeros((0, len(STATISTICS) * len(self.names)), dtype=np.float32)
        self._staged: list[tuple[torch.Tensor, list[np.ndarray]]] = []  # outputs per stage, per features seen

    def self_fit(self, train_zoo: AnyZoo, labels: torch.Tensor, representations: torch.Tensor | None,
                 seed: int) -> TreesLearner:
        reps = representations if representations is not None else self.represent_all(train_zoo)
        self._train_zoo, self._train_features = train_zoo, reps.cpu().numpy()  # [M_train, 7·T]
        self.trees = fit_trees(self.config.n_trees, self.config.tree_learning_rate, self.config.tree_depth,
                               self._train_features, labels.cpu().numpy(), self.n_classes, seed)
        return self

    def run_epoch(self, epoch: int) -> tuple[torch.Tensor, float]:
        """Epoch e uses the first e + 1 stages; its loss is the train loss scikit-learn recorded at that stage."""
        assert self.trees is not None, "self_fit first"
        self.load_state_dict({"n_stages": torch.tensor(epoch + 1)})
        loss = torch.tensor([float(self.trees.estimator.train_score_[epoch])], dtype=torch.float64)  # [1]
        return loss, self.config.tree_learning_rate

    def n_epochs(self, configured: int) -> int:
        return self.config.n_trees

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        return []

    def predict_rows(self, zoo: AnyZoo, index: torch.Tensor) -> torch.Tensor:
        return self.predict_from(layer_statistics(rows_params(zoo, index), self.names))  # index order

    def represent_all(self, zoo: AnyZoo, batch_size: int = 1024) -> torch.Tensor:
        return zoo_statistics(zoo, self.names, batch_size)  # [M, 7·T]

    def predict_from(self, representations: torch.Tensor) -> torch.Tensor:
        """[M, d_out] outputs of the first `n_stages` stages; every stage's are computed once per features."""
        assert self.trees is not None, "self_fit first"
        staged = next((outs for reps, outs in self._staged if reps is representations), None)
        if staged is None:
            staged = list(self.trees.staged_outputs(representations.cpu().numpy()))
            self._staged.append((representations, staged))
        return torch.from_numpy(staged[self.n_stages - 1]).to(representations.device)

    def predict_reps(self, representations: torch.Tensor) -> torch.Tensor:
        return self.predict_from(representations)

    def flops_per_model(self, zoo: AnyZoo) -> int:
        """The statistics (reductions and a sort, which torch's counter counts as 0) and the trees' comparisons."""
        assert self.trees is not None and self._train_zoo is not None, "self_fit first"
        with FlopCounterMode(display=False) as counter:
            one = torch.zeros(1, dtype=torch.long, device=self._train_zoo.device)
            layer_statistics(rows_params(self._train_zoo, one), self.names)
        return counter.get_total_flops() + self.trees.comparisons(self._train_features[:1])

    def param_counts(self) -> dict[str, int]:
        """Nodes of the trees used (a split's feature and threshold, or a leaf's value)."""
        n = self.trees.n_nodes() if self.trees is not None else 0
        return {"probe_params": 0, "predictor_params": n, "n_params": n}

    def snapshot(self) -> torch.Tensor | None:
        return None

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"n_stages": torch.tensor(self.n_stages)}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.n_stages = int(state["n_stages"])
        if self.trees is not None:
            self.trees.n_stages = self.n_stages

    def to(self, device: torch.device) -> TreesLearner:
        self.device = torch.device(device)
        return self

    def train(self, mode: bool = True) -> TreesLearner:
        self.training = mode
        return self

    def eval(self) -> TreesLearner:
        return self.train(False)


def layer_statistics(params: Mapping[str, torch.Tensor], names: Sequence[str]) -> torch.Tensor:
    """[B, 7·len(names)]: for each tensor in `names` order, of each model, its mean, variance (population, ddof 0),
    and 0/25/50/75/100 % quantiles (linear interpolation, numpy's default)."""
    feats = []
    for name in names:
        x = params[name].flatten(1)  # [B, n]
        feats.append(torch.cat([x.mean(dim=1, keepdim=True), x.var(dim=1, correction=0, keepdim=True),
                                quantiles(x, QUANTILES)], dim=1))  # [B, 7]
    return torch.stack(feats, dim=1).flatten(1)  # [B, T, 7] → [B, 7·T]


def quantiles(x: torch.Tensor, qs: Sequence[float]) -> torch.Tensor:
    """[B, len(qs)] quantiles of each row of x [B, n], numpy's linear interpolation; by one sort (torch.quantile
    refuses inputs over 16M elements, e.g. a batch of CNN Wild Park's larger layers)."""
    s = x.sort(dim=1).values  # [B, n]
    pos = torch.tensor(qs, dtype=torch.float64) * (x.shape[1] - 1)  # [len(qs)]
    lo, hi = pos.floor().long(), pos.ceil().long()
    frac = (pos - lo).to(x.dtype).to(x.device)
    lo, hi = lo.to(x.device), hi.to(x.device)
    return s[:, lo] + (s[:, hi] - s[:, lo]) * frac


@torch.no_grad()
def zoo_statistics(zoo: AnyZoo, names: Sequence[str] | None = None, batch_size: int = 1024) -> torch.Tensor:
    """[M, 7·T] statistics of all the zoo's models in row order (T: the zoo's tensors, by default all of them)."""
    names = tuple(shared_param_shapes(zoo)) if names is None else tuple(names)
    device = zoo.device
    index = torch.arange(len(zoo), device=device)
    feats = [layer_statistics(rows_params(zoo, i), names) for i in index.split(batch_size)]
    return torch.cat(feats) if feats else torch.zeros(0, len(STATISTICS) * len(names), device=device)
