"""What storing a zoo's weights as float16 changes: the models' answers to probes and their accuracy labels.

A committed zoo may store float16 weights (`save_zoo(weights_dtype="float16")`, half the bytes) only if probing the
rounded models is probing the same models: this compares a float32 zoo with its float16 copy on the same probes
(every model's outputs, the largest absolute difference) and, for a zoo labelled by test accuracy, recomputes each
model's accuracy from the rounded weights on the test images its label was measured on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from probegen_nb.core.arch.registry import forward
from probegen_nb.core.zoo import AnyZoo, MixedZoo


@dataclass(frozen=True)
class RoundingEffect:
    """The largest changes float16 storage makes: outputs on the probes, and accuracy labels."""

    max_response_diff: float  # max over models, probes and outputs of |f(x; w16) − f(x; w32)|
    max_accuracy_diff: float  # max over models of |accuracy(w16) − the zoo's float32 label| (nan: not measured)
    n_labels_changed: int  # models whose recomputed accuracy differs from their label by more than 1e-6
    n_models: int


@torch.no_grad()
def rounding_effect(zoo32: AnyZoo, zoo16: AnyZoo, probes: torch.Tensor, test_x: torch.Tensor | None = None,
                    test_y: torch.Tensor | None = None, label: str = "test_acc", chunk: int = 64) -> RoundingEffect:
    """Compare `zoo32` with `zoo16` (the same models, weights rounded) on `probes` [P, …]; with `test_x` [N, …] and
    `test_y` [N], also each float16 model's accuracy against `zoo32`'s `label` column (measured on those images)."""
    groups32 = zoo32.groups if isinstance(zoo32, MixedZoo) else (zoo32,)
    groups16 = zoo16.groups if isinstance(zoo16, MixedZoo) else (zoo16,)
    if [len(g) for g in groups32] != [len(g) for g in groups16]:
        raise ValueError(f"zoos differ in size: {[len(g) for g in groups32]} vs {[len(g) for g in groups16]} models")
    response, accuracy, changed = 0.0, float("nan") if test_x is None else 0.0, 0
    for g32, g16 in zip(groups32, groups16):
        for s in range(0, len(g32), chunk):
            p32 = {k: v[s:s + chunk] for k, v in g32.params.items()}
            p16 = {k: v[s:s + chunk] for k, v in g16.params.items()}
            response = max(response, float((forward(g32.spec, p16, probes)
                                            - forward(g32.spec, p32, probes)).abs().max()))
            if test_x is None or test_y is None:
                continue
            correct = torch.zeros(len(next(iter(p16.values()))), device=test_x.device)  # beside the predictions
            for t in range(0, len(test_x), 1000):  # [m, n, K] at most 1,000 images at a time
                pred = forward(g32.spec, p16, test_x[t:t + 1000]).argmax(-1)
                correct += (pred == test_y[t:t + 1000]).sum(-1)
            acc16 = correct / len(test_x)
            acc32 = torch.as_tensor(g32.table[label].to_numpy(copy=True)[s:s + chunk], dtype=torch.float32,
                                    device=acc16.device)
            diff = (acc16 - acc32).abs()
            accuracy = max(accuracy, float(diff.max()))
            changed += int((diff > 1e-6).sum())
    return RoundingEffect(response, accuracy, changed, len(zoo32))
