"""Weight-space baselines beside probing: StatNN (per-layer weight statistics), the weight-space MLP (with and without
hidden-neuron permutation augmentation), NFN (nfn's invariant NP/HNP layers) and a Neural-Graphs-style graph network
(PyTorch Geometric). Each is a config dataclass that builds a `base.Baseline` module, trained by
`experiment.train.train()` like a probing run (`RunConfig(method=<baseline config>)`); `registry` knows them all.
"""
