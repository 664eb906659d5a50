"""Device placement on a CPU-only machine: the benchmarks' reference and batched paths, and the library's batched
forwards, training steps, zoo builders and baselines, run on a simulated second device (`devicesim`), where a tensor
or module made on the host and mixed with the device's raises as it would on CUDA.

A plain CPU run cannot see such a mix (every tensor is on the one CPU), which is how bench_cnn_zoo's one-at-a-time
reference came to build its modules on the host while its images were on the GPU. Under `SimulatedDevice` that bug
raises: reverting its fix (`ReferenceCNN(...)` without `.to(train_x.device)`) fails `test_benchmark_on_a_device`
for bench_cnn_zoo with "conv2d: tensors on the device mixed with host tensors of shapes [(16, 1, 3, 3), (16,)]".

Why not `torch.set_default_device("meta")` with `device="cpu"` (see `devicesim`'s docstring): meta tensors hold no
data, so deliberate host tensors (numpy round-trips, host-side bookkeeping, CPU-generator draws, which silently land on
meta) and data-dependent steps (early stops, `.item()`) fail there for no bug, and a CPU tensor indexed by a meta
index gives garbage instead of raising. What the simulation does not see: kernels that exist on the CPU only, and
CUDA's own speed or memory; `benchmarks/gpu_check.sh` runs everything on a real GPU.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from probegen_nb.baselines.graph_net import GraphNetConfig
from probegen_nb.baselines.nfn import NFNConfig
from probegen_nb.baselines.statnn import StatNNConfig
from probegen_nb.baselines.weight_mlp import WeightMLPConfig
from probegen_nb.core.arch.cnn import MODEL_CHUNK, CNNSpec, cnn_forward, cnn_forward_runs
from probegen_nb.core.arch.siren import SirenSpec, reconstruct, siren_forward
from probegen_nb.core.data import images_to_inputs
from probegen_nb.core.zoo import AnyZoo, MixedZoo, Task, Zoo
from probegen_nb.core.zoo_io import load_zoo
from probegen_nb.experiment.config import RunConfig
from probegen_nb.experiment.train import train
from probegen_nb.probes.coords import ProbeGenConfig
from probegen_nb.probes.dead_leaves import dead_leaves
from probegen_nb.probes.images import ConvProbeGenConfig
from probegen_nb.zoos.cnn import CNNZooRecipe, build_cnn_zoo
from probegen_nb.zoos.inr import SirenRecipe, fit_inrs
from probegen_nb.zoos.rounding import rounding_effect

from devicesim import TARGET, DeviceMixError, SimulatedDevice
from paths import REPO


def load_bench(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- the simulation catches what CUDA would refuse


def test_the_simulation_raises_where_cuda_would_and_only_there() -> None:
    x = torch.ones(2, 1, 8, 8, device=TARGET)
    with SimulatedDevice():
        with pytest.raises(DeviceMixError):
            nn.Conv2d(1, 4, 3)(x)  # a module built on the host, fed the device's inputs (bench_cnn_zoo's bug)
        with pytest.raises(DeviceMixError):
            torch.zeros(2, 1, 8, 8) + x  # a host tensor made without a device
        with pytest.raises(DeviceMixError):
            torch.randn(3, generator=torch.Generator().manual_seed(0), device=TARGET)  # a CPU generator's draw
        with pytest.raises(DeviceMixError):
            torch.arange(5)[torch.tensor([0, 1], device=TARGET)]  # a host tensor indexed by a device index
        with pytest.raises(DeviceMixError):
            torch.cat([torch.as_tensor(np.zeros(3, dtype=np.float32)), torch.zeros(3, device=TARGET)])
        with pytest.raises(DeviceMixError):
            (x * 2).numpy()
        # what CUDA allows: moved modules, moved draws, host scalars, host indices into device tensors, .cpu()
        assert nn.Conv2d(1, 4, 3).to(x.device)(x).device == TARGET
        draw = torch.randn(3, generator=torch.Generator().manual_seed(0)).to(TARGET)
        y = draw * torch.tensor(2.0) + x.flatten()[torch.tensor([0, 1, 2])]
        assert y.device == TARGET and isinstance(y.cpu().numpy(), np.ndarray)
    seeded = torch.randn(3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(draw, seeded)  # the simulation leaves random streams alone


# ---------------------------------------------------------------- the benchmarks, as gpu_check.sh runs them


def host_zoo(folder: Path) -> AnyZoo:
    """`load_zoo`, its tensors known to the simulation as host ones (safetensors makes them where it cannot see)."""
    return load_zoo(folder).to("cpu")


@pytest.mark.filterwarnings("ignore:fit_inrs. torch.compile failed")  # dynamo does not trace under the simulation
@pytest.mark.parametrize("name", ["bench_cnn_zoo", "bench_inr_fitting", "bench_fixed_probes", "bench_train_step"])
def test_benchmark_on_a_device(name: str, tmp_path: Path, monkeypatch) -> None:
    """Each benchmark's main (smoke sizes): its reference and batched paths and their agreement check."""
    bench = load_bench(name)
    if hasattr(bench, "load_zoo"):
        monkeypatch.setattr(bench, "load_zoo", host_zoo)
    with SimulatedDevice():
        result = bench.main(["--smoke", "--out", str(tmp_path / "out.json"), "--device", str(TARGET)])
    assert result["smoke"]


@pytest.fixture(scope="module")
def probe_bench():
    bench = load_bench("bench_probe_training")
    return bench


def test_probe_training_benchmark_on_a_device(probe_bench) -> None:
    """bench_probe_training's INR and CNN cases: per-model modules vs the batched step (main runs these and
    `measure_wild_park`, below, at the same smoke sizes)."""
    with SimulatedDevice():
        inr = probe_bench.measure(host_zoo(probe_bench.ZOO).split("train"), 4, 8, 1, 1, TARGET)
        cnn_zoo = host_zoo(probe_bench.CNN_ZOO).split("train")
        group = cnn_zoo.groups[0] if isinstance(cnn_zoo, MixedZoo) else cnn_zoo
        cnn = probe_bench.measure(group, 4, 8, 1, 1, TARGET, ConvProbeGenConfig())
    assert inr["max_abs_diff"] < 1e-4 and cnn["max_abs_diff"] < 1e-4


def test_wild_park_benchmark_on_a_device(probe_bench) -> None:
    """The mixed zoo's per-group loop and `represent_rows` (host-counted runs, device-side sort)."""
    with SimulatedDevice():
        out = probe_bench.measure_wild_park(3, 8, 1, 1, TARGET, (2,))
    assert out["distinct"]["max_abs_diff"] < 1e-4


# ---------------------------------------------------------------- the library


def test_batched_forwards_on_a_device() -> None:
    """cnn_forward on shared probes past MODEL_CHUNK (the CPU's model chunks and unfold first layer), on per-model
    inputs (tiles), cnn_forward_runs, siren_forward and reconstruct."""
    g = torch.Generator().manual_seed(0)
    spec = CNNSpec.small_cnn_zoo()
    m = MODEL_CHUNK + 3
    params = {k: (0.3 * torch.randn(m, *s, generator=g)).to(TARGET) for k, s in spec.param_shapes().items()}
    x = torch.rand(5, 1, 32, 32, generator=g).to(TARGET)
    siren = SirenSpec()
    sp = {k: (0.1 * torch.randn(4, *s, generator=g)).to(TARGET) for k, s in siren.param_shapes().items()}
    with SimulatedDevice():
        assert cnn_forward(spec, params, x).shape == (m, 5, 10)
        assert cnn_forward(spec, params, x.expand(m, -1, -1, -1, -1)).shape == (m, 5, 10)
        tanh = CNNSpec.small_cnn_zoo(activation="tanh")
        assert cnn_forward_runs([spec, tanh], [m - 3, 3], params, x).shape == (m, 5, 10)
        assert siren_forward(siren, sp, torch.rand(7, 2, generator=g).to(TARGET)).shape == (4, 7, 1)
        assert reconstruct(siren, sp, 6, 6).shape == (4, 6, 6)


def test_fit_inrs_on_a_device_early_stop_included() -> None:
    """fit_inrs with models leaving the batch at the target PSNR (host-side bookkeeping of the retired ones)."""
    with SimulatedDevice():
        images = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        images[0] = 128  # a flat image: reached at once
        fit = fit_inrs(images, recipe=SirenRecipe(steps=4, target_psnr=12.0), device=TARGET)
    assert fit.steps[0] < 4 and fit.steps[1] == 4 and fit.psnr.shape == (3,)  # noise: about 11 dB at most


def test_cnn_zoo_build_and_rounding_on_a_device(fake_images, tmp_path: Path) -> None:
    """build_cnn_zoo's train_cnns (per-model dropout, minibatch streams, accuracy labels) and rounding_effect."""
    data = fake_images.stripes(60, 40)
    with SimulatedDevice():
        zoo = build_cnn_zoo(data, tmp_path / "zoo", n_runs=4, recipe=CNNZooRecipe(steps=2, batch_size=8),
                            chunk_size=4, seed=0, device=TARGET)
    zoo = zoo.to(TARGET)
    probes = dead_leaves(4, 1, 32, torch.Generator().manual_seed(0)).to(TARGET)
    test_x = images_to_inputs(data.test_images).to(TARGET)
    test_y = torch.as_tensor(data.test_labels).to(TARGET)
    with SimulatedDevice():
        effect = rounding_effect(zoo, zoo, probes, test_x, test_y)
    assert effect.max_response_diff == 0 and effect.n_labels_changed == 0


def mixed_cnn_zoo(m: int = 12) -> MixedZoo:
    """relu and tanh Small CNNs with a scalar label, for the baselines and probing on CNNs."""
    g = torch.Generator().manual_seed(1)
    groups = []
    for a, activation in enumerate(("relu", "tanh")):
        spec = CNNSpec.small_cnn_zoo(activation=activation)
        params = {k: 0.3 * torch.randn(m, *s, generator=g) for k, s in spec.param_shapes().items()}
        table = pd.DataFrame({"model_id": np.arange(m) + a * m, "split": ["train", "train", "val", "test"] * (m // 4),
                              "test_acc": torch.rand(m, generator=g).numpy()})
        groups.append(Zoo(spec, params, table, Task("test_acc", None)))
    return MixedZoo(tuple(groups), Task("test_acc", None))


RUNS = {"probegen": {"probes": ProbeGenConfig(), "n_probes": 4}, "statnn_mlp": {"baseline": StatNNConfig(head="mlp")},
        "statnn_gbt": {"baseline": StatNNConfig(n_trees=3)}, "mlp_aug": {"baseline": WeightMLPConfig(augment=True)},
        "nfn": {"baseline": NFNConfig()}, "graph_net": {"baseline": GraphNetConfig(node_dim=8, n_layers=1)}}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_training_runs_on_a_device(name: str, class_shift_zoo: Zoo, tmp_path: Path) -> None:
    """train(): probing and every baseline, on the INR zoo and (probing with generated images, the weight-space
    baselines) on a mixed CNN zoo, writing the run folder."""
    zoos = [class_shift_zoo, mixed_cnn_zoo()] if name != "nfn" else [class_shift_zoo]
    for i, zoo in enumerate(zoos):
        kw = dict(RUNS[name])
        if name == "probegen" and i == 1:
            kw["probes"] = ConvProbeGenConfig()
        config = RunConfig().override({"epochs": 1, "hidden": 16, "n_hidden": 1, "batch_size": 8,
                              "max_train_models": 16, "device": str(TARGET), **kw})
        with SimulatedDevice():
            run = train(config, zoo.to("cpu"), out_dir=tmp_path / f"{name}{i}", progress=False)
        assert run.metrics["history"] and (tmp_path / f"{name}{i}" / "metrics.json").exists()
