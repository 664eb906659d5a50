"""The graph-network baseline: the graph built from a batch of models holds exactly their weights and biases, the
network is invariant to every model's hidden-neuron permutations (and per-node position embeddings on hidden neurons
break that), and it trains through `train()` into a decodable label."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from probegen_nb.baselines.graph_net import GraphNet, GraphNetConfig, ModelGraph
from probegen_nb.baselines.registry import baseline_config_from_dict, baseline_config_to_dict
from probegen_nb.core.arch.cnn import CNNSpec
from probegen_nb.core.arch.siren import SirenSpec
from probegen_nb.core.arch.symmetry import permute_hidden, random_hidden_permutations
from probegen_nb.core.zoo import Task, Zoo
from probegen_nb.experiment.config import RunConfig
from probegen_nb.experiment.train import train

pytest.importorskip("torch_geometric", reason="torch-geometric is a dependency (pyproject.toml)")

WILD = CNNSpec(1, (4, 6, 6), (5, 3, 3), 1, 1, ("relu", "tanh", "gelu"), (-1, -1, -1), image_size=8)  # kernels 5, 3
SPECS = {"siren": SirenSpec(), "cnn": CNNSpec.small_cnn_zoo(), "kernels": WILD}


def random_params(spec, m: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: 0.3 * torch.randn(m, *s, generator=g) for k, s in spec.param_shapes().items()}


def random_zoo(spec, m: int) -> Zoo:
    table = pd.DataFrame({"model_id": range(m), "split": ["train"] * m, "label": np.arange(m) % 2})
    return Zoo(spec, random_params(spec, m), table, Task("label", 2))


def small(**kw) -> RunConfig:
    return RunConfig().override({"epochs": 2, "hidden": 32, "n_hidden": 1, "device": "cpu", **kw})


@pytest.mark.parametrize("name", list(SPECS))
def test_the_graph_of_a_batch_rebuilds_every_models_weights(name: str) -> None:
    spec, m = SPECS[name], 3
    params = random_params(spec, m)
    graph = ModelGraph(spec.param_shapes())
    x, edge_index, edge_attr, model_of_node = graph.batch(params)
    n = graph.n_nodes
    assert x.shape == (m * n, 1) and edge_index.shape == (2, m * graph.n_edges)
    assert edge_attr.shape == (m * graph.n_edges, graph.edge_dim)
    assert torch.equal(model_of_node.unique(), torch.arange(m))
    src, dst = edge_index
    assert torch.equal(model_of_node[src], model_of_node[dst])  # no edge between two models' graphs
    local = torch.arange(m * n) % n  # each node's index within its model
    offsets = torch.tensor((0, *graph.widths)).cumsum(0)
    biases = x.reshape(m, n)
    assert (biases[:, : graph.widths[0]] == 0).all()  # input neurons: no bias
    for layer, (w_name, b_name) in enumerate(zip(graph.weight_names, graph.bias_names), start=1):
        into = graph.node_layer[local[dst]] == layer  # the edges into this layer's neurons
        assert (graph.node_layer[local[src[into]]] == layer - 1).all()  # …come from the layer before
        shape = params[w_name].shape  # [M, out, in, (k, k)]
        rebuilt = torch.full((m, shape[1], shape[2], graph.edge_dim), math.nan)
        rebuilt[model_of_node[dst[into]], local[dst[into]] - offsets[layer],
                local[src[into]] - offsets[layer - 1]] = edge_attr[into]
        k2 = math.prod(shape[3:])
        torch.testing.assert_close(rebuilt[..., :k2].reshape(shape), params[w_name], rtol=0, atol=0)
        assert (rebuilt[..., k2:] == 0).all()  # smaller kernels zero-padded
        torch.testing.assert_close(biases[:, offsets[layer]: offsets[layer + 1]], params[b_name], rtol=0, atol=0)


@pytest.mark.parametrize("name", list(SPECS))
def test_graph_net_is_invariant_to_hidden_permutations_and_hidden_node_indices_break_it(name: str) -> None:
    spec, m = SPECS[name], 5
    zoo = random_zoo(spec, m)
    model = GraphNetConfig().build(zoo, 2, 32, 1, torch.Generator().manual_seed(0)).double().eval()
    params = {k: v.double() for k, v in zoo.params.items()}  # float64: the sums' order changes under permutation
    permuted = permute_hidden(spec, params, random_hidden_permutations(spec, m, torch.Generator().manual_seed(1)))
    with torch.no_grad():
        out = model(params)
        assert out.shape == (m, 2) and model.represent(params).shape == (m, model.rep_dim)
        assert (model(permuted) - out).abs().max() < 1e-5
        # negative control: an embedding of every node's own index, hidden neurons included
        n = model.graph.n_nodes
        model.graph.node_position = torch.arange(n)
        model.position_embedding = nn.Embedding(n, model.node_in.out_features).double()
        rep = model.represent(params)
        change = (model.represent(permuted) - rep).abs().max() / rep.abs().max()
        assert change > 1e-3, change


def test_graph_net_config_round_trips_and_refuses_bad_values() -> None:
    for config in (GraphNetConfig(), GraphNetConfig(node_dim=8, n_layers=2)):
        run = RunConfig(method=config)
        assert RunConfig.from_dict(json.loads(json.dumps(run.to_dict()))) == run
        assert baseline_config_from_dict(baseline_config_to_dict(config)) == config
    with pytest.raises(ValueError, match="n_layers >= 1, got 32, 0"):
        GraphNetConfig(n_layers=0)


def test_graph_net_learns_a_decodable_label_through_train(class_shift_zoo) -> None:
    zoo = class_shift_zoo  # SIRENs whose class shifts the whole output layer
    run = train(small(baseline=GraphNetConfig(), epochs=10, lr=3e-3, batch_size=16), zoo, progress=False)
    assert isinstance(run.model, GraphNet) and run.metrics["flops_per_model"] > 0
    assert run.metrics["best_val_accuracy"] >= 0.75 and run.metrics["test_accuracy"] >= 0.7, run.metrics  # chance 1/3


def test_graph_net_regresses_on_a_cnn_zoo() -> None:
    spec, m = WILD, 48
    params = random_params(spec, m, seed=1)
    table = pd.DataFrame({"model_id": range(m), "split": (["train"] * 4 + ["val", "test"]) * (m // 6),
                          "test_acc": params["fc.bias"].mean(1).numpy()})
    run = train(small(baseline=GraphNetConfig(), epochs=2), Zoo(spec, params, table, Task("test_acc", None)),
                progress=False)
    assert run.metrics["metric"] == "kendall_tau" and math.isfinite(run.metrics["test_kendall_tau"])
    assert run.metrics["flops_per_model"] > 0
