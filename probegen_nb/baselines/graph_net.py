"""A Neural-Graphs-style graph network (Kofinas et al. 2024, "Graph Neural Networks for Learning Equivariant
Representations of Neural Networks"): each model becomes a graph, neurons as nodes (a neuron's bias as its feature,
input neurons 0), weights as edges (a convolution's k×k kernel as the edge vector), message passing with edge
features (PyTorch Geometric's GINEConv; a residual and a layer norm each round), a mean over nodes beside the
output neurons' states, then the probing predictor's MLP. Residual links of CNN Wild Park are not edges here.

Hidden neurons get only a learned embedding of their layer, so permuting any model's hidden neurons permutes its
nodes and leaves the representation unchanged (tests check it); input and output neurons keep an embedding of
their index (their order means something). A batch of B models is one disjoint graph, built from the stacked
tensors by index arithmetic, without a loop over models.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from probegen_nb.baselines.base import Baseline, rows_params, shared_param_shapes
from probegen_nb.core.zoo import AnyZoo
from probegen_nb.methods.learner import init_from
from probegen_nb.methods.predictor import Predictor


@dataclass(frozen=True)
class GraphNetConfig:
    """The graph network's hyper-parameters. Width and depth are NG-GNN's (the paper's code,
    `experiments/{inr_classification,cnn_generalization}/configs/model/pna.yaml`: d_hid 32, num_layers 4); its
    backbone there is PNA (mean/min/max/std aggregators, edge updates, sinusoidal layer embeddings), here GINEConv
    with a layer norm, simpler and with the same invariance. The head is the probing predictor (`RunConfig.hidden`,
    `n_hidden`) under the probing protocol (`RunConfig.lr`, `epochs`, `batch_size`)."""

    kind: ClassVar[str] = "graph_net"
    node_dim: int = 32  # width of node and edge states (NG-GNN's d_hid)
    n_layers: int = 4  # message-passing rounds (NG-GNN's num_layers), each with a residual and a layer norm
    std_floor: float = 1e-5  # a tensor's std below this counts as 1 (as in the NFN baseline)

    @property
    def label(self) -> str:
        """What a progress bar calls a run of it."""
        return self.kind

    def __post_init__(self) -> None:
        if self.node_dim < 1 or self.n_layers < 1:
            raise ValueError(f"GraphNetConfig needs node_dim >= 1 and n_layers >= 1, got {self.node_dim}, "
                             f"{self.n_layers}")

    def build(self, train_zoo: AnyZoo, d_out: int, hidden: int, n_hidden: int,
              generator: torch.Generator) -> GraphNet:
        """The network, its per-tensor normalisation fitted on `train_zoo` (the run's train models)."""
        with init_from(generator):  # the module's init: one draw of the run's generator
            shapes = shared_param_shapes(train_zoo)
            index = torch.arange(len(train_zoo), device=train_zoo.device)
            params = rows_params(train_zoo, index)
            mean = torch.stack([params[n].mean() for n in shapes])  # [T]
            std = torch.stack([params[n].std() if params[n].numel() > 1 else params[n].new_ones(()) for n in shapes])
            std = torch.where(std.isnan() | (std < self.std_floor), torch.ones_like(std), std)
            return GraphNet(ModelGraph(shapes), mean, std, self.node_dim, self.n_layers, d_out, hidden, n_hidden)


class ModelGraph(nn.Module):
    """One architecture's graph template and the batched conversion of params [B, …] into one disjoint graph.

    Nodes of a model, layer by layer: its n_0 inputs, then each layer's n_l neurons (N in all). Edges: for layer l,
    one per weight W_l[i, j], from neuron j of layer l-1 to neuron i of layer l, in W_l's row-major order (E in all);
    each edge's vector is the weight's k×k kernel (1 for a dense weight), zero-padded to the largest k² (K)."""

    edge_template: torch.Tensor  # buffers, registered in __init__
    node_layer: torch.Tensor
    node_position: torch.Tensor

    def __init__(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        super().__init__()
        names = tuple(shapes)
        if len(names) % 2 or not all(w.endswith("weight") and b.endswith("bias")
                                     for w, b in zip(names[::2], names[1::2])):
            raise ValueError(f"a model graph needs (weight, bias) tensors layer by layer, got {names}")
        self.names = names
        self.weight_names, self.bias_names = names[::2], names[1::2]
        weights = [shapes[n] for n in self.weight_names]
        self.widths = (weights[0][1], *(s[0] for s in weights))  # neurons of each layer, inputs first
        for layer, s in enumerate(weights[1:], start=1):
            if s[1] != self.widths[layer]:
                raise ValueError(f"{self.weight_names[layer]} has {s[1]} inputs, the layer before it "
                                 f"{self.widths[layer]} neurons")
        self.kernel_sizes = tuple(int(torch.Size(s[2:]).numel()) for s in weights)  # k² per layer (1 if dense)
        self.edge_dim = max(self.kernel_sizes)  # K
        offsets = torch.tensor((0, *self.widths)).cumsum(0)  # first node of each layer, then N
        self.n_nodes = int(offsets[-1])
        src, dst, layer_of_node = [], [], []
        for layer, (n_out, n_in) in enumerate(zip(self.widths[1:], self.widths[:-1]), start=1):
            i, j = torch.meshgrid(torch.arange(n_out), torch.arange(n_in), indexing="ij")  # W_l's [out, in] grid
            dst.append(offsets[layer] + i.flatten())
            src.append(offsets[layer - 1] + j.flatten())
        for layer, n in enumerate(self.widths):
            layer_of_node.append(torch.full((n,), layer))
        self.register_buffer("edge_template", torch.stack([torch.cat(src), torch.cat(dst)]))  # [2, E]
        self.register_buffer("node_layer", torch.cat(layer_of_node))  # [N]: each node's layer index
        # Position ids: input neuron j → j, output neuron i → n_0 + i, any neuron of hidden layer l → one id per layer
        n_in, n_out, n_hidden_layers = self.widths[0], self.widths[-1], len(self.widths) - 2
        position = torch.cat([torch.arange(n_in), *(torch.full((w,), n_in + n_out + h)
                                                    for h, w in enumerate(self.widths[1:-1])),
                              n_in + torch.arange(n_out)])
        self.n_positions = n_in + n_out + n_hidden_layers
        self.register_buffer("node_position", position)  # [N]

    @property
    def n_edges(self) -> int:
        return self.edge_template.shape[1]

    def node_features(self, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """[B, N]: each neuron's bias, 0 for input neurons."""
        first = params[self.bias_names[0]]
        inputs = first.new_zeros(first.shape[0], self.widths[0])
        return torch.cat([inputs, *(params[n] for n in self.bias_names)], dim=1)

    def edge_features(self, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """[B, E, K]: each weight's kernel, in the edge template's order."""
        parts = []
        for name, k2 in zip(self.weight_names, self.kernel_sizes):
            w = params[name]
            w = w.reshape(w.shape[0], w.shape[1] * w.shape[2], k2)  # [B, out·in, k²]
            parts.append(F.pad(w, (0, self.edge_dim - k2)))  # [B, out·in, K]
        return torch.cat(parts, dim=1)

    def batch(self, params: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                   torch.Tensor]:
        """One disjoint graph of B models: node features [B·N, 1], edge index [2, B·E] (model b's nodes at
        b·N … b·N + N - 1), edge features [B·E, K], and each node's model [B·N]."""
        x = self.node_features(params)  # [B, N]
        b = x.shape[0]
        shift = (torch.arange(b, device=x.device) * self.n_nodes)[:, None, None]  # [B, 1, 1]
        edge_index = (self.edge_template[None] + shift).transpose(0, 1).reshape(2, -1)  # [2, B·E]
        edge_attr = self.edge_features(params).reshape(-1, self.edge_dim)  # [B·E, K]
        model_of_node = torch.arange(b, device=x.device).repeat_interleave(self.n_nodes)  # [B·N]
        return x.reshape(-1, 1), edge_index, edge_attr, model_of_node


class GraphNet(Baseline):
    """Params [B, …] → one disjoint graph → GINEConv rounds over node states [B·N, d] → readout [B, d·(1 + n_out)]
    (the mean over each model's nodes, beside its output neurons' states, which have an order) → predictor. Edges
    run both ways (a direction flag beside each weight), so messages reach every neuron."""

    tensor_mean: torch.Tensor  # buffers, registered in __init__
    tensor_std: torch.Tensor

    def __init__(self, graph: ModelGraph, mean: torch.Tensor, std: torch.Tensor, node_dim: int, n_layers: int,
                 d_out: int, hidden: int, n_hidden: int) -> None:
        from torch_geometric.nn import GINEConv

        super().__init__()
        self.graph = graph
        self.register_buffer("tensor_mean", mean.clone())  # [T], in param_shapes order
        self.register_buffer("tensor_std", std.clone())  # [T]
        self.node_in = nn.Linear(1, node_dim)  # bias → state
        self.layer_embedding = nn.Embedding(len(graph.widths), node_dim)  # every neuron: its layer
        self.position_embedding = nn.Embedding(graph.n_positions, node_dim)  # inputs, outputs: index; hidden: layer
        self.edge_in = nn.Linear(graph.edge_dim + 1, node_dim)  # kernel and direction flag → edge state
        self.convs = nn.ModuleList(
            GINEConv(nn.Sequential(nn.Linear(node_dim, node_dim), nn.ReLU(), nn.Linear(node_dim, node_dim)))
            for _ in range(n_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(node_dim) for _ in range(n_layers))  # per node: keeps sums in scale
        self.rep_dim = node_dim * (1 + graph.widths[-1])  # the mean node state, and each output neuron's
        self.predictor = Predictor(self.rep_dim, d_out, hidden, n_hidden)
        self.fixed_representation = False  # the graph network trains
        # per-edge states of a whole split (1000 INRs: 2.2M edges × d floats) stream through memory at every op;
        # 16 models (about 2 MB of states) stay in cache: evaluation measured 4-7× faster than at 1024 on the CPU
        self.eval_batch_size = 16

    def normalise(self, params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {n: (params[n] - self.tensor_mean[t]) / self.tensor_std[t] for t, n in enumerate(self.graph.names)}

    def represent(self, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        x, edge_index, edge_attr, model_of_node = self.graph.batch(self.normalise(params))
        b = int(x.shape[0] // self.graph.n_nodes)
        position = self.graph.node_position.repeat(b)  # [B·N]
        layer = self.graph.node_layer.repeat(b)  # [B·N]
        h = self.node_in(x) + self.layer_embedding(layer) + self.position_embedding(position)  # [B·N, d]
        both = torch.cat([edge_index, edge_index.flip(0)], dim=1)  # [2, 2·B·E]: forward, then backward edges
        flag = torch.cat([edge_attr.new_zeros(len(edge_attr), 1), edge_attr.new_ones(len(edge_attr), 1)])
        e = self.edge_in(torch.cat([edge_attr.repeat(2, 1), flag], dim=1))  # [2·B·E, d]
        for conv, norm in zip(self.convs, self.norms):
            h = norm(h + F.relu(conv(h, both, e)))  # [B·N, d]
        mean = h.new_zeros(b, h.shape[1]).index_add_(0, model_of_node, h) / self.graph.n_nodes  # [B, d]
        outputs = h.reshape(b, self.graph.n_nodes, -1)[:, -self.graph.widths[-1]:]  # [B, n_out, d]
        return torch.cat([mean, outputs.flatten(1)], dim=1)  # [B, d·(1 + n_out)]
