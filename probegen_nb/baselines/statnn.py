"""StatNN (Unterthiner et al. 2020, "Predicting Neural Network Accuracy from Weights"): each model is represented by
seven statistics of each of its weight and bias tensors, then predicted by gradient-boosted trees (`baselines.trees`,
fit outside the torch loop) or by the probing predictor's MLP on the standardised statistics (this module).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from probegen_nb.baselines.base import Baseline, mean_std, rows_params, shared_param_shapes
from probegen_nb.core.zoo import AnyZoo
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
              generator: torch.Generator) -> StatNN:
        """The MLP head, its feature standardisation fitted on `train_zoo` (the run's train models)."""
        if self.fits_trees:
            raise ValueError("StatNNConfig(head='gbt') fits scikit-learn trees (baselines.trees), not a torch module")
        names = tuple(shared_param_shapes(train_zoo))
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
