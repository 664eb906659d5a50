"""The paper's protocol per benchmark: which benchmark a zoo belongs to, and how many epochs the official scripts train
on it. Everything else in the protocol (Q, lr, batch, the predictor) is the same on every benchmark and lives in
`RunConfig`'s defaults.

The official scripts train 150 epochs on CIFAR10-GS and 30 on the INR zoos and on CNN Wild Park. `RunConfig.epochs`
defaults to 30; the CLI, the paper table and the notebooks ask `protocol_epochs(zoo)`, and a notebook that trains
fewer on a CPU says so where it prints its table.
"""

from __future__ import annotations

from typing import Literal

from probegen_nb.core.zoo import MixedZoo, Zoo

Benchmark = Literal["mnist-inr", "fmnist-inr", "cifar10-gs", "wild-park", "other"]

DEFAULT_EPOCHS = 30  # the INR zoos and CNN Wild Park
PROTOCOL_EPOCHS: dict[Benchmark, int] = {"cifar10-gs": 150}  # the official CIFAR10-GS script

_PUBLIC_CONVERTERS: dict[str, Benchmark] = {
    # the only Small CNN Zoo the paper reports on is CIFAR10-GS
    "probegen_nb.zoos.public.cnn.convert_small_cnn_zoo": "cifar10-gs",
    "probegen_nb.zoos.public.cnn.convert_cnn_wild_park": "wild-park",
}


def benchmark_of(zoo: Zoo | MixedZoo) -> Benchmark:
    """The paper's benchmark a zoo stands for, from its build record: the data set of a built zoo (CIFAR10-GS CNNs;
    colour CIFAR-10 CNNs are Wild Park's; MNIST / Fashion-MNIST INRs), or the public converter that wrote it."""
    info = zoo.info
    if info.get("builder") in _PUBLIC_CONVERTERS:
        return _PUBLIC_CONVERTERS[info["builder"]]
    kinds = {spec.kind for spec in zoo.specs}
    dataset = info.get("dataset")
    if kinds == {"siren"} and dataset in ("mnist", "fmnist"):
        return "mnist-inr" if dataset == "mnist" else "fmnist-inr"
    if kinds == {"cnn"} and dataset == "cifar10-gs":
        return "cifar10-gs"
    if kinds == {"cnn"} and dataset == "cifar10":
        return "wild-park"
    return "other"


def protocol_probes(zoo: Zoo | MixedZoo) -> tuple[str, int]:
    """The paper's probe source and Q for the zoo's kind of model: ProbeGen's deep linear coordinate generator at
    Q = 128 for INRs, its transposed-convolution generator at Q = 64 for image classifiers."""
    if len(zoo.specs[0].input_shape) == 3:
        return "probegen-conv", 64
    return "probegen", 128


def protocol_epochs(zoo: Zoo | MixedZoo) -> int:
    """Epochs of the official script for the zoo's benchmark: 150 on CIFAR10-GS, 30 everywhere else."""
    return PROTOCOL_EPOCHS.get(benchmark_of(zoo), DEFAULT_EPOCHS)
