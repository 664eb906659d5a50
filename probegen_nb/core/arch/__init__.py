"""Architecture families: each a frozen spec, its reference `nn.Module` and its batched forward over M models."""
