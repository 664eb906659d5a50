"""probegen-nb: weight-space learning by probing.

The public API, one import away (`import probegen_nb as pg`), loaded on first use so that `import probegen_nb` and
the command line's `--help` stay instant (torch is imported by the first name that needs it):

    zoo = pg.load_zoo("data/zoos/mnist-inr-small")                       # a zoo: stacked weights [M, ...] + a table
    run = pg.train(pg.RunConfig(pg.ProbingConfig(n_probes=64), epochs=5), zoo, out_dir="runs/api")  # one run
    again = pg.load_run("runs/api")                                       # read back: config, metrics, model, probes
    sweep = pg.Sweep("q", pg.grid(pg.RunConfig(epochs=5), {"q64": {"n_probes": 64}, "q128": {}}, [0, 1, 2]), "runs/q")
    table = pg.compare_variants(pg.run_sweep(sweep), "test_accuracy", "q128")   # mean ± std, paired differences
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {
    # zoos
    "Zoo": "probegen_nb.core.zoo", "MixedZoo": "probegen_nb.core.zoo", "Task": "probegen_nb.core.zoo",
    "load_zoo": "probegen_nb.core.zoo_io", "save_zoo": "probegen_nb.core.zoo_io",
    # runs
    "RunConfig": "probegen_nb.experiment.config", "ProbingConfig": "probegen_nb.experiment.config",
    "train": "probegen_nb.experiment.train",
    "load_run": "probegen_nb.experiment.runs", "protocol_epochs": "probegen_nb.experiment.protocol",
    # many runs
    "Sweep": "probegen_nb.experiment.sweep", "grid": "probegen_nb.experiment.sweep",
    "run_sweep": "probegen_nb.experiment.sweep", "compare_variants": "probegen_nb.experiment.stats",
    "format_comparison": "probegen_nb.experiment.stats",
    # probe sources
    "ProbeGenConfig": "probegen_nb.probes.coords", "VanillaConfig": "probegen_nb.probes.coords",
    "UniformConfig": "probegen_nb.probes.coords", "ConvProbeGenConfig": "probegen_nb.probes.images",
    "ImageVanillaConfig": "probegen_nb.probes.images", "DeadLeavesConfig": "probegen_nb.probes.dead_leaves",
    # building zoos
    "build_inr_zoo": "probegen_nb.zoos.inr", "plan_one_per_image": "probegen_nb.zoos.inr",
    "build_cnn_zoo": "probegen_nb.zoos.cnn",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'probegen_nb' has no attribute {name!r}; the public API: {', '.join(__all__)}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return __all__
