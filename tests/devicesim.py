"""A second device on a CPU-only machine, for tests: catches code that mixes host tensors with the device's, as a
CUDA run would, without a GPU.

Inside `SimulatedDevice()`, code is given `TARGET` (`cpu:0`) as its device. Every tensor is tracked as either on the
host (made without a device, from numpy or Python data, by a CPU generator, or by `.cpu()`) or on the target (made
with `device=TARGET`, moved there by `.to(TARGET)`, or computed from target tensors). The CUDA rules then raise a
`DeviceMixError`: an op mixing target tensors with host tensors of one or more dimensions (a 0-dim host tensor is
allowed, as CUDA allows CPU scalars), a host tensor indexed by a target index (the reverse works in torch), `.numpy()`
of a target tensor, and a draw from a CPU `torch.Generator` made directly on the target. Both kinds really live on
the CPU, so data-dependent code (`.item()`, early stops, `nonzero`) runs as usual and seeded results are unchanged.

Why not `torch.set_default_device("meta")` with `device="cpu"`: meta tensors hold no data, so every deliberate host
tensor (numpy round-trips, bookkeeping on the host, a CPU generator's draws, which land on meta silently without
advancing the generator) fails or is garbage there, and a CPU tensor indexed by a meta index returns garbage instead
of raising; only forward passes without data-dependent steps could run under it.

Tracking is by storage address (views share their base's kind); host storages are kept alive while the mode is on,
so no target tensor can reuse a host tensor's address. Tensors made by autograd's engine (gradients) are not seen
when made and count as target tensors.
"""

from __future__ import annotations

import numbers

import torch
from torch._C import _functorch
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors
from torch.utils._pytree import tree_flatten

TARGET = torch.device("cpu", 0)  # what the code under test is told to use; plain "cpu" means the host


class DeviceMixError(RuntimeError):
    """What CUDA would have raised."""


_CONSTRUCTORS = _device_constructors()
_INDEXING = {torch.Tensor.__getitem__, torch.Tensor.__setitem__, torch.Tensor.index_select, torch.index_select,
             torch.Tensor.gather, torch.gather, torch.take_along_dim, torch.Tensor.take_along_dim}
_COPIES = {torch.Tensor.copy_, torch.Tensor.data.__set__,  # cross-device copies are fine
           torch._has_compatible_shallow_copy_type}  # a check of the tensor type, no data
_DEVICE_GET = torch.Tensor.device.__get__


def _is_target_device(device: object) -> bool | None:
    """True: the target; False: the host; None: not a device argument."""
    if isinstance(device, str):
        try:
            device = torch.device(device)
        except RuntimeError:
            return None
    if isinstance(device, torch.device):
        return device == TARGET
    return None


def _unwrapped(t: torch.Tensor) -> torch.Tensor:
    """The tensor a `vmap`/`grad` wrapper holds (wrappers have no storage of their own): its kind is the wrapper's."""
    while _functorch.is_functorch_wrapped_tensor(t):
        t = _functorch.get_unwrapped(t)
    return t


class SimulatedDevice(TorchFunctionMode):
    """`with SimulatedDevice(): code(device=TARGET)` raises `DeviceMixError` where a CUDA run would raise."""

    def __init__(self) -> None:
        super().__init__()
        self.host: dict[int, torch.UntypedStorage] = {}  # storage address → storage (kept alive)

    def __enter__(self):
        """Also wraps `torch.from_numpy`, which torch does not pass to modes: its tensors are host ones."""
        self._from_numpy = torch.from_numpy

        def from_numpy(a):
            out = self._from_numpy(a)
            self._mark(out, host=True)
            return out

        torch.from_numpy = from_numpy
        return super().__enter__()

    def __exit__(self, *exc):
        torch.from_numpy = self._from_numpy
        return super().__exit__(*exc)

    def on_host(self, t: torch.Tensor) -> bool:
        t = _unwrapped(t)
        return t.numel() > 0 and t.untyped_storage().data_ptr() in self.host

    def _mark(self, out: object, host: bool) -> None:
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                t = _unwrapped(t)
            if isinstance(t, torch.Tensor) and t.numel() > 0 and t.device.type == "cpu":
                storage = t.untyped_storage()
                if host:
                    self.host[storage.data_ptr()] = storage
                else:
                    self.host.pop(storage.data_ptr(), None)

    def _to_target(self, t: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """A move to the target: a copy (on the CPU `.to` would return the same tensor, still a host one)."""
        if out.numel() > 0 and out.untyped_storage().data_ptr() == t.untyped_storage().data_ptr():
            out = out.clone()
        self._mark(out, host=False)
        return out

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: C901 (one rule per branch)
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        if func in _CONSTRUCTORS and not (func in (torch.tensor, torch.as_tensor) and tensors):
            target = _is_target_device(kwargs.get("device"))
            gen = kwargs.get("generator")
            if target and gen is not None and gen.device.type == "cpu":
                raise DeviceMixError(f"torch.{name}(generator=<CPU generator>, device={kwargs['device']}): draw on "
                                     f"the CPU, then .to(device)")
            if target:
                kwargs = {**kwargs, "device": "cpu"}
            out = func(*args, **kwargs)
            self._mark(out, host=not target)
            return out
        if func in (torch.Tensor.cpu,):
            out = func(*args, **kwargs)
            if not self.on_host(args[0]):
                out = out.clone() if out.numel() else out
                self._mark(out, host=True)
            return out
        if func is torch.Tensor.to:  # cpu:0 is a real device to torch: only the bookkeeping differs
            t, out = args[0], func(*args, **kwargs)
            other = next((a for a in args[1:] if isinstance(a, torch.Tensor)), None)
            dests = [d for d in map(_is_target_device, (*args[1:], kwargs.get("device"))) if d is not None]
            dest = (not self.on_host(other)) if other is not None else (dests[0] if dests else None)
            if dest is None:  # a dtype change: the same kind as its input
                self._mark(out, host=self.on_host(t))
            elif dest:
                out = self._to_target(t, out)
            else:
                if out is t and not self.on_host(t) and t.numel():
                    out = t.clone()
                self._mark(out, host=True)
            return out
        if func in (torch.Tensor.numpy, torch.Tensor.__array__) and tensors and not self.on_host(args[0]) \
                and args[0].numel() > 0:
            raise DeviceMixError(f"{name}() of a tensor on the device: move it with .cpu() first")
        if func in _INDEXING and tensors:
            base, rest = args[0], [t for t in tensors[1:] if t is not args[0]]
            if func is torch.Tensor.__setitem__:
                index = [t for t in tree_flatten(args[1])[0] if isinstance(t, torch.Tensor)]
            else:
                index = rest
            if self.on_host(base) and any(not self.on_host(i) and i.numel() > 0 for i in index):
                raise DeviceMixError(f"{name}: a host tensor {tuple(base.shape)} indexed by a device index")
            out = func(*args, **kwargs)
            if func is not torch.Tensor.__setitem__:
                self._mark(out, host=self.on_host(base))
            return out
        if func in _COPIES:
            return func(*args, **kwargs)
        if func == _DEVICE_GET:  # the target's tensors say they are on it, so `.to(x.device)` follows them
            return torch.device("cpu") if self.on_host(args[0]) or args[0].device.type != "cpu" else TARGET
        host = [t for t in tensors if self.on_host(t)]
        target = [t for t in tensors if t.numel() > 0 and not self.on_host(t)]
        if target and any(t.dim() > 0 for t in host):
            shapes = [tuple(t.shape) for t in host if t.dim() > 0]
            raise DeviceMixError(f"{name}: tensors on the device mixed with host tensors of shapes {shapes}")
        out = func(*args, **kwargs)
        if tensors and not isinstance(out, (bool, numbers.Number)):
            self._mark(out, host=bool(host) and not target)
        return out


class HostWaitError(RuntimeError):
    """What a CUDA graph capture would have raised: the step waits for the host, or copies host data in."""


class NoHostWait(TorchFunctionMode):
    """Inside `SimulatedDevice` (`sim`): raises `HostWaitError` where code on the target would make the host wait for
    the device or feed the device from host memory, which a CUDA graph capture refuses (NVIDIA's checklist for
    `torch.cuda.graph`): `.item()`, `bool()`, `.tolist()`, `.cpu()` / `.numpy()` of a target tensor, data-dependent
    shapes (`nonzero`, boolean masks, `unique`), a host tensor moved to the target, a target tensor indexed by a host
    index, and a target tensor made from Python data. Enter it after `SimulatedDevice`, so it sees each call first."""

    _READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__bool__, torch.Tensor.__int__,
              torch.Tensor.__float__, torch.Tensor.__index__, torch.Tensor.cpu, torch.Tensor.numpy,
              torch.Tensor.__array__, torch.Tensor.nonzero, torch.nonzero, torch.Tensor.unique, torch.unique,
              torch.unique_consecutive, torch.masked_select, torch.Tensor.masked_select, torch.argwhere}

    def __init__(self, sim: SimulatedDevice) -> None:
        super().__init__()
        self.sim = sim

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        on_target = [t for t in tensors if t.numel() > 0 and not self.sim.on_host(t)]
        if func in self._READS and on_target:
            raise HostWaitError(f"{name}() of a tensor on the device: the host waits for it")
        if func in _INDEXING and any(t.dtype == torch.bool for t in tensors[1:]):
            raise HostWaitError(f"{name} with a boolean mask: its shape depends on the device's data")
        if func in _INDEXING and tensors and not self.sim.on_host(tensors[0]) \
                and any(self.sim.on_host(t) and t.dim() > 0 for t in tensors[1:]):
            raise HostWaitError(f"{name}: a device tensor indexed by a host index (copied over every call)")
        if func in (torch.tensor, torch.as_tensor) and _is_target_device(kwargs.get("device")) \
                and not (args and isinstance(args[0], torch.Tensor)):
            raise HostWaitError(f"torch.{name}(<Python data>, device=...): host data copied to the device in the step")
        if func is torch.Tensor.to and args and self.sim.on_host(args[0]) and args[0].numel() > 0:
            dests = [_is_target_device(a) for a in (*args[1:], kwargs.get("device"))]
            if any(dests):
                raise HostWaitError(f".to(): a host tensor {tuple(args[0].shape)} copied to the device in the step")
        return func(*args, **kwargs)
