"""Batched SIREN INR zoo builder with the public zoos' recipe (DWSNets MNIST/FMNIST INRs).

Thousands of INRs are fitted at once: their weights are stacked tensors, one batched forward evaluates all of them,
and a hand-written Adam updates them elementwise, which is exactly independent per-model Adam because every
model's loss depends only on its own weights. Builds run in chunks saved as they finish, so a killed build resumes;
the chunks can run as tasks of an engine (`core.engine`: here, or on Dask workers), each carrying its own images.

Long builds compile the loss-and-gradient step with `torch.compile` (inductor fuses the sines, cosines and
products around the small matmuls: 2× the eager step on a 2-core CPU). A compile costs about 15 s cold, so builds
below `COMPILE_MIN_INR_STEPS` (where it would be more than 5% of the build) and single fits stay eager.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from probegen_nb.core.allocator import tune_cpu_allocator
from probegen_nb.core.arch.siren import SirenSpec, pixel_grid, siren_forward
from probegen_nb.core.data import ImageDataset, ImageSplit
from probegen_nb.core.device import resolve_device, synchronize
from probegen_nb.core.engine import EngineConfig
from probegen_nb.core.jobs import ResumableJob, engine_info, software_versions
from probegen_nb.core.threads import ThreadGovernor
from probegen_nb.core.zoo import SPLITS, Task, Zoo, ZooFormatError
from probegen_nb.core.zoo_io import save_zoo
from probegen_nb.zoos.public.layouts import INR_LAYOUTS, parse_inr_path


@dataclass(frozen=True)
class SirenRecipe:
    """How each INR is fitted. The default is the public zoos' recipe; faithfulness beats PSNR for benchmarks."""

    steps: int = 1000  # Adam steps per INR
    lr: float = 5e-4  # Adam learning rate
    target_psnr: float = 40.0  # an INR stops early once its reconstruction reaches this PSNR (dB)
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self) -> None:
        """One clear error for a value that would fit nothing, or diverge (a typo on the command line)."""
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"SirenRecipe.steps (={self.steps!r}) must be an integer of at least 1")
        for name in ("lr", "eps", "target_psnr"):  # target_psnr may be inf: no early stop
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0 and not math.isnan(value)
                    and (math.isfinite(value) or name == "target_psnr")):
                raise ValueError(f"SirenRecipe.{name} (={value!r}) must be a finite number above 0")
        if not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in (self.beta1, self.beta2)):
            raise ValueError(f"SirenRecipe.beta1/beta2 (={self.beta1!r}, {self.beta2!r}) must be in [0, 1)")


PUBLIC_RECIPE = SirenRecipe()


# Sharper reconstructions, at the cost of no longer matching the public zoos' weight statistics.
HIGH_QUALITY_RECIPE = SirenRecipe(steps=3000, lr=1e-3)


def init_siren_params(spec: SirenSpec, n_models: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Stacked init for n_models SIRENs: sine layers uniform(±√(6/fan_in)/w0) with zero bias, the last layer
    with PyTorch's nn.Linear default (uniform(±1/√fan_in) for weight and bias)."""
    params: dict[str, torch.Tensor] = {}
    last = spec.n_layers - 1
    for i, (fan_in, fan_out) in enumerate(zip(spec.widths[:-1], spec.widths[1:])):
        bound = 1 / math.sqrt(fan_in) if i == last else math.sqrt(6 / fan_in) / spec.w0
        params[f"seq.{i}.weight"] = _uniform((n_models, fan_out, fan_in), bound, generator)
        params[f"seq.{i}.bias"] = (_uniform((n_models, fan_out), bound, generator) if i == last
                                   else torch.zeros(n_models, fan_out))
    return params


def _uniform(shape: tuple[int, ...], bound: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


# Eager fitting takes about 0.14 ms per INR-step here (64 at once); 2M INR-steps (2,000 INRs of the public recipe)
# is about 5 min, so a cold compile (~15 s) is under 5% of any build at least this long.
COMPILE_MIN_INR_STEPS = 2_000_000


def compiles_by_default(n_inrs: int, recipe: SirenRecipe, device: torch.device) -> bool:
    """Whether a build of `n_inrs` INRs fits through torch.compile unless told: long builds on a CPU."""
    return device.type == "cpu" and n_inrs * recipe.steps >= COMPILE_MIN_INR_STEPS  # GPU: eager (16k at once)


def loss_and_grads(spec: SirenSpec, names: list[str], params: list[torch.Tensor], coords: torch.Tensor,
                   target: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Per-model MSE [B] and the gradients of their sum (each model's gradient is its own loss's)."""
    pred = siren_forward(spec, dict(zip(names, params)), coords)  # [B, P, 1]
    mse = ((pred - target) ** 2).mean(dim=(1, 2))
    return mse, torch.autograd.grad(mse.sum(), params)


# dynamic shapes: models that reach the target PSNR leave the batch without a recompile
compiled_loss_and_grads = torch.compile(loss_and_grads, dynamic=True)


def psnr_from_mse(mse: torch.Tensor) -> torch.Tensor:
    """PSNR in dB for signals in [0, 1]."""
    return -10 * torch.log10(mse.clamp_min(1e-12))


@dataclass
class FitResult:
    params: dict[str, torch.Tensor]  # name -> [B, *shape], on the CPU
    psnr: torch.Tensor  # [B] dB of the kept weights
    steps: torch.Tensor  # [B] Adam steps taken before the INR stopped
    threads: dict | None = None  # the intra-op threads used (core.threads.ThreadGovernor.finish())
    compiled: bool = False  # whether every step ran through torch.compile


def fit_inrs(images: torch.Tensor | np.ndarray, spec: SirenSpec = SirenSpec(), recipe: SirenRecipe = PUBLIC_RECIPE,
             generator: torch.Generator | None = None, device: str | torch.device = "auto",
             progress: bool = False, compile: bool = False) -> FitResult:
    """Fit one SIREN per image, all at once. images: [B, H, W] uint8 (or floats in [0, 1]).

    `compile`: the step through `torch.compile` (the same fit to float rounding; falls back to eager, with a
    warning, where compiling fails, e.g. without a C++ compiler)."""
    dev = resolve_device(device)
    if dev.type == "cpu":
        tune_cpu_allocator()  # GPU: torch's CUDA caching allocator already reuses freed blocks
    threads = ThreadGovernor.start("inr_fit", dev)  # CPU: intra-op threads fitted to the machine's load
    # a CUDA tensor too; an array is copied (kilobytes a chunk): a read-only one (a memory-mapped data set) would make
    # torch warn that writing to the tensor is undefined
    imgs = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.array(images))
    target = (imgs.float() / 255 if imgs.dtype == torch.uint8 else imgs.float()).to(dev)
    b, h, w = target.shape
    target = target.reshape(b, h * w, 1)  # [B, P, 1]
    coords = pixel_grid(h, w).to(dev)  # [P, 2]
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    init = init_siren_params(spec, b, gen)
    names = list(init)
    params = [init[k].to(dev) for k in names]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    active = torch.arange(b, device=dev)  # original indices of models still training
    out = {k: torch.empty_like(init[k]) for k in names}
    psnr = torch.empty(b)
    steps = torch.full((b,), recipe.steps, dtype=torch.long)

    def retire(keep: torch.Tensor, step: int, mse: torch.Tensor | None) -> None:
        """Store the models not in `keep` into the outputs and drop them from the working set."""
        nonlocal active, target, params, m, v
        gone = ~keep
        idx = active[gone].cpu()
        for k, p in zip(names, params):
            out[k][idx] = p[gone].detach().cpu()
        if mse is not None:
            psnr[idx] = psnr_from_mse(mse[gone]).cpu()
        steps[idx] = step
        active, target = active[keep], target[keep]
        params = [p[keep].detach() for p in params]
        m, v = [t[keep] for t in m], [t[keep] for t in v]

    bar = tqdm(range(1, recipe.steps + 1), desc=f"fitting {b} INRs", disable=not progress, leave=False)
    for t in bar:
        for p in params:
            p.requires_grad_(True)
        mse: torch.Tensor | None = None
        grads: tuple[torch.Tensor, ...] = ()
        if compile:
            try:
                mse, grads = compiled_loss_and_grads(spec, names, params, coords, target)  # [B'] per-model loss
            except Exception as e:  # noqa: BLE001 - any compiler failure: the eager step computes the same
                warnings.warn(f"fit_inrs: torch.compile failed ({type(e).__name__}: {str(e)[:200]}); fitting eagerly",
                              stacklevel=2)
                compile = False
        if mse is None:
            mse, grads = loss_and_grads(spec, names, params, coords, target)
        with torch.no_grad():
            done = psnr_from_mse(mse) >= recipe.target_psnr  # these weights already reached the target
            if done.any():
                keep = ~done
                grads = tuple(g[keep] for g in grads)
                retire(keep, t - 1, mse.detach())
                if len(active) == 0:
                    break
            params = [p.detach() for p in params]
            c1, c2 = 1 - recipe.beta1**t, 1 - recipe.beta2**t
            for p, g, mt, vt in zip(params, grads, m, v):
                mt.mul_(recipe.beta1).add_(g, alpha=1 - recipe.beta1)
                vt.mul_(recipe.beta2).addcmul_(g, g, value=1 - recipe.beta2)
                p.addcdiv_(mt, (vt / c2).sqrt_().add_(recipe.eps), value=-recipe.lr / c1)
        threads.update()
        if progress and t % 50 == 0:
            bar.set_postfix(psnr=f"{float(psnr_from_mse(mse).mean()):.1f}")
    if len(active):
        with torch.no_grad():
            pred = siren_forward(spec, dict(zip(names, params)), coords)
            mse = ((pred - target) ** 2).mean(dim=(1, 2))
        retire(torch.zeros(len(active), dtype=torch.bool, device=dev), recipe.steps, mse)
    return FitResult(out, psnr, steps, threads.finish(), compile)


def plan_inr_zoo(dataset: ImageDataset, n_train: int, n_val: int, n_test: int, seed: int = 0) -> pd.DataFrame:
    """Class-balanced plan: train and val INRs from distinct official train images, test INRs from official test
    images. Columns: model_id, split, label, image_split, image_index."""
    rng = np.random.default_rng(seed)
    n_cls = len(dataset.classes)
    rows = []
    per_image_split: tuple[tuple[ImageSplit, tuple[tuple[str, int], ...]], ...] = (
        ("train", (("train", n_train), ("val", n_val))), ("test", (("test", n_test),)))
    for image_split, parts in per_image_split:
        labels = dataset.labels(image_split)
        per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in range(n_cls)]
        taken = [0] * n_cls
        for split, n in parts:
            counts = [n // n_cls + (1 if c < n % n_cls else 0) for c in range(n_cls)]
            for c, k in enumerate(counts):
                pick = per_class[c][taken[c]:taken[c] + k]
                if len(pick) < k:
                    raise ValueError(f"{dataset.name}: class {c} has too few {image_split} images for the plan")
                taken[c] += k
                rows += [(split, c, image_split, int(i)) for i in pick]
    plan = pd.DataFrame(rows, columns=["split", "label", "image_split", "image_index"])
    plan = plan.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # mix classes within chunks
    plan = plan.sort_values("split", key=lambda s: s.map(SPLITS.index), kind="stable").reset_index(drop=True)
    plan.insert(0, "model_id", np.arange(len(plan)))
    return plan


# The public MNIST INR zoo's split file is not available here, so a one-INR-per-image MNIST zoo splits by position:
# val is the last twelfth of the official train images (55,000-59,999 of 60,000: the public zoo's 5,000), train the
# rest, test every official test image. Deterministic, seed-free, and the same on any copy of MNIST.
VAL_FRACTION_OF_TRAIN_IMAGES = 1 / 12


def plan_all_images(dataset: ImageDataset) -> pd.DataFrame:
    """One INR per image, as the public MNIST and Fashion-MNIST INR zoos (70,000 each): val is the last twelfth of the
    official train images (`VAL_FRACTION_OF_TRAIN_IMAGES`), train the rest, test every official test image, each
    split in the official order. Columns as `plan_inr_zoo`'s. For Fashion-MNIST the public split json is the faithful
    plan (`plan_from_splits_json`)."""
    n_train_images = len(dataset.labels("train"))
    n_val = round(n_train_images * VAL_FRACTION_OF_TRAIN_IMAGES)
    parts = []
    splits: tuple[tuple[str, ImageSplit, np.ndarray], ...] = (
        ("train", "train", np.arange(n_train_images - n_val)),
        ("val", "train", np.arange(n_train_images - n_val, n_train_images)),
        ("test", "test", np.arange(len(dataset.labels("test")))))
    for split, image_split, index in splits:
        labels = dataset.labels(image_split)[index]
        parts.append(pd.DataFrame({"split": split, "label": labels.astype(int), "image_split": image_split,
                                   "image_index": index}))
    plan = pd.concat(parts, ignore_index=True)
    plan.insert(0, "model_id", np.arange(len(plan)))
    return plan


def plan_one_per_image(dataset: ImageDataset, splits_json: str | Path | None = None,
                       first_images: int | None = None) -> tuple[pd.DataFrame, str]:
    """The public-size plan, one INR per image, and a line saying which rule made it: the public split file where
    one is given (Fashion-MNIST's is in the project's shared data), else `plan_all_images`'s positional rule.
    `first_images`: only the first N official images, train and test in the data set's proportion (a preview or a
    test of the full build; under the positional rule val is then the last twelfth of those train images)."""
    if first_images is not None:
        n_tr, n_te = len(dataset.labels("train")), len(dataset.labels("test"))
        if not 0 < first_images <= n_tr + n_te:
            raise ValueError(f"first_images (={first_images}) must be in 1..{n_tr + n_te}, the {dataset.name} images")
        keep_tr = round(first_images * n_tr / (n_tr + n_te))
        dataset = dataset.head(keep_tr, first_images - keep_tr)
    if splits_json is None:
        return plan_all_images(dataset), (f"one INR per image; val = the last twelfth of the "
                                          f"{len(dataset.labels('train')):,} official train images, test = every "
                                          f"official test image")
    plan = plan_from_splits_json(splits_json)
    if first_images is not None:
        n_images = {"train": len(dataset.labels("train")), "test": len(dataset.labels("test"))}
        plan = plan[plan["image_index"] < plan["image_split"].map(n_images)].reset_index(drop=True)
        plan["model_id"] = np.arange(len(plan))
    return plan, f"one INR per image of the public split file {Path(splits_json).name}"


def describe_plan(plan: pd.DataFrame, classes: tuple[str, ...] | int) -> pd.DataFrame:
    """INRs per split (rows, in split order) and class (columns), with totals: what `build-inr-zoo --dry-run`
    prints before anything is fitted."""
    n_classes = classes if isinstance(classes, int) else len(classes)
    counts = (pd.crosstab(plan["split"], plan["label"]).reindex(index=[s for s in SPLITS if s in set(plan["split"])],
                                                                 columns=range(n_classes), fill_value=0))
    counts["total"] = counts.sum(axis=1)
    counts.loc["total"] = counts.sum(axis=0)
    counts.columns.name, counts.index.name = "class", "split"
    return counts


def estimate_build_seconds(n_inrs: int, device: str | torch.device = "auto", chunk_size: int = 64,
                           recipe: SirenRecipe = PUBLIC_RECIPE, spec: SirenSpec = SirenSpec(),
                           measure_steps: int = 20) -> dict[str, float]:
    """How long `build_inr_zoo` of `n_inrs` INRs will fit, from a short measurement of the fitting step at the
    build's chunk size on this device (eager, after a warm-up): every INR runs `recipe.steps` steps (the public recipe
    never reaches its 40 dB early stop on MNIST), so the fit takes n_inrs · steps / rate. A CPU build that compiles
    its step (`compiles_by_default`) runs about 2x faster than this eager rate: there the figure is an upper bound."""
    dev = resolve_device(device)
    batch = max(1, min(chunk_size, n_inrs))
    rate = measure_fit_throughput(dev, batch=batch, steps=measure_steps, spec=spec, recipe=recipe)  # INR-steps/s
    return {"inr_steps_per_s": rate, "seconds": n_inrs * recipe.steps / rate, "measured_batch": batch,
            "upper_bound": compiles_by_default(n_inrs, recipe, dev)}


def default_chunk_size(device: str | torch.device) -> int:
    """INRs fitted at once when not told: 64 on a CPU (larger chunks are no faster there, measured), 16,384 on a GPU
    (739k INR-steps/s on an H200, where 64 at once would leave it idle)."""
    return 64 if resolve_device(device).type == "cpu" else 16_384


def plan_from_splits_json(path: str | Path, max_per_split: dict[str, int] | None = None,
                          seed: int = 0, balance_classes: bool = True) -> pd.DataFrame:
    """The public INR zoos' image-to-split assignment ({split: {path: [...], label: [...]}}, paths in either
    public layout, see `parse_inr_path`), optionally subsampled per split: to `max_per_split[split]` INRs, the same
    number of each class where `balance_classes` (the remainder to the lowest class ids), so a small zoo keeps the
    public split's images and a uniform label prior.

    Every path must name its official image: the plan is for refitting INRs, and an INR cannot be fitted without
    its image, so a path in neither layout raises a ValueError naming the splits file and the path."""
    path = Path(path)
    try:
        splits = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable splits file ({e})") from None
    rows = []
    for split, entry in splits.items():
        if split not in SPLITS:
            raise ValueError(f"{path}: unknown split {split!r}; expected {SPLITS}")
        for p, label in zip(entry["path"], entry["label"]):
            image = parse_inr_path(p, int(label), path)
            if image is None:
                raise ValueError(f"{path}: {split} INR path {p!r} names no official image (expected {INR_LAYOUTS}); "
                                 f"cannot plan a fit without knowing the image")
            rows.append((split, int(label), image.split, image.index))
    plan = pd.DataFrame(rows, columns=["split", "label", "image_split", "image_index"])
    if max_per_split:
        parts = []
        for split, g in plan.groupby("split", sort=False):
            n = min(len(g), max_per_split.get(split, len(g)))
            if not balance_classes:
                parts.append(g.sample(n=n, random_state=seed).sort_index())
                continue
            classes = sorted(g["label"].unique())
            for i, (c, gc) in enumerate(g.groupby("label", sort=True)):
                want = n // len(classes) + (i < n % len(classes))
                if want > len(gc):
                    raise ValueError(f"{path}: {split} has {len(gc)} INRs of class {c}, fewer than the {want} a "
                                     f"class-balanced {n} needs; pass balance_classes=False or a smaller count")
                parts.append(gc.sample(n=want, random_state=seed))
        plan = pd.concat(parts).sort_index().reset_index(drop=True)
    plan = plan.sort_values("split", key=lambda s: s.map(SPLITS.index), kind="stable").reset_index(drop=True)
    plan.insert(0, "model_id", np.arange(len(plan)))
    return plan


def build_inr_zoo(plan: pd.DataFrame, dataset: ImageDataset, out_dir: str | Path, spec: SirenSpec = SirenSpec(),
                  recipe: SirenRecipe = PUBLIC_RECIPE, chunk_size: int = 256, seed: int = 0,
                  device: str | torch.device = "auto", overwrite: bool = False, compile: bool | None = None,
                  engine: EngineConfig | None = None) -> Zoo:
    """Fit one INR per plan row, `chunk_size` at a time, and write the zoo folder.

    `compile`: None compiles the fitting step for builds of at least `COMPILE_MIN_INR_STEPS` INR-steps on a CPU
    (GPUs stay eager until measured there); True/False force it.

    `engine`: None fits the chunks here, one after another, at this process's thread choice (`ThreadGovernor`:
    $PROBEGEN_THREADS, else as many threads as the machine's load allows); an `EngineConfig` makes each chunk one of
    its tasks (local or Dask), fitted at `engine.threads_per_worker` threads. Builds with the same parameters give
    the same zoo whatever the engine, bit for bit on the CPU at the same thread count (floating-point sums may
    round differently at another count).

    Finished chunks are kept in `.<name>.partial/` beside `out_dir`; running again with the same plan resumes there,
    through any engine. Each chunk has its own seed, so a resumed build equals an uninterrupted one. A chunk that
    fails raises a `ChunkError` naming it once the others have finished and been saved.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} exists; pass overwrite=True to rebuild it")
    dev = resolve_device(device)
    job = ResumableJob(out_dir, {
        "plan": plan[["model_id", "split", "label", "image_split", "image_index"]].to_dict(orient="list"),
        "spec": spec.to_dict(), "recipe": asdict(recipe), "chunk_size": chunk_size, "seed": seed,
        "dataset": dataset.name})

    n_chunks = math.ceil(len(plan) / chunk_size)
    if compile is None:
        compile = compiles_by_default(len(plan), recipe, dev)
    t0 = time.perf_counter()
    rows = [plan.iloc[c * chunk_size:(c + 1) * chunk_size] for c in range(n_chunks)]
    todo = [c for c in range(n_chunks) if not job.done(c)]
    bar = tqdm(total=len(plan), desc=f"INR zoo {out_dir.name}", unit="INR")
    bar.update(len(plan) - sum(len(rows[c]) for c in todo))
    try:
        # each task carries its own images (uint8, 784 B an INR), not the data set
        job.run(fit_inr_chunk, {c: (gather_images(dataset, rows[c]), spec, recipe, seed * 100_003 + c, str(dev),
                                    compile) for c in todo},
                engine, on_done=lambda c: bar.update(len(rows[c])),
                describe=lambda c: f"chunk {c} (plan rows {c * chunk_size}-{c * chunk_size + len(rows[c]) - 1})")
    finally:
        bar.close()

    chunks = [job.load(c) for c in range(n_chunks)]
    params = {k: torch.cat([ch[k] for ch in chunks]) for k in spec.param_shapes()}
    table = plan[["model_id", "split", "label", "image_split", "image_index"]].copy().reset_index(drop=True)
    table["psnr"] = torch.cat([ch["psnr"] for ch in chunks]).numpy().round(3)
    table["fit_steps"] = torch.cat([ch["steps"] for ch in chunks]).numpy()
    info = {"builder": "probegen_nb.zoos.inr.build_inr_zoo", "dataset": dataset.name, "data": dataset.provenance(),
            "recipe": asdict(recipe), "seed": seed, "chunk_size": chunk_size, "device": str(dev),
            "compiled_fitting": compile, **engine_info(engine),
            "build_seconds_this_run": round(time.perf_counter() - t0, 1), "software": software_versions()}
    try:
        zoo = Zoo(spec, params, table, Task("label", len(dataset.classes)), info)
    except ZooFormatError as e:
        raise ZooFormatError(f"build in {job.work}: {e}") from None
    save_zoo(zoo, out_dir, overwrite=overwrite)
    job.finish()
    return zoo


def fit_inr_chunk(images: np.ndarray, spec: SirenSpec, recipe: SirenRecipe, seed: int, device: str,
                  compile: bool) -> dict[str, torch.Tensor]:
    """One chunk of `build_inr_zoo`, a task of its engine: an INR per image of `images` [B, H, W] uint8, fitted from
    the chunk's own seed; returns what the chunk file holds (params [B, …], `psnr` and `steps` [B])."""
    res = fit_inrs(images, spec, recipe, torch.Generator().manual_seed(seed), device, compile=compile)
    return {**res.params, "psnr": res.psnr, "steps": res.steps}


def gather_images(dataset: ImageDataset, rows: pd.DataFrame) -> np.ndarray:
    """The official images the plan rows name (`image_split`, `image_index`), in row order."""
    first = dataset.images(rows["image_split"].iloc[0])
    out = np.empty((len(rows), *first.shape[1:]), dtype=first.dtype)
    for split in rows["image_split"].unique():  # at most two: train and test
        mask = (rows["image_split"] == split).to_numpy()
        out[mask] = dataset.images(split)[rows["image_index"].to_numpy()[mask]]
    return out


def measure_fit_throughput(device: str | torch.device = "auto", batch: int = 64, steps: int = 20,
                           spec: SirenSpec = SirenSpec(), recipe: SirenRecipe = PUBLIC_RECIPE) -> float:
    """INR-steps per second of `fit_inrs` on random 28×28 images (after one warm-up fit)."""
    dev = resolve_device(device)
    images = torch.randint(0, 256, (batch, 28, 28), dtype=torch.uint8)
    short = SirenRecipe(**{**asdict(recipe), "steps": steps, "target_psnr": float("inf")})
    fit_inrs(images, spec, SirenRecipe(**{**asdict(short), "steps": 2}), device=dev)
    synchronize(dev)
    t0 = time.perf_counter()
    fit_inrs(images, spec, short, device=dev)
    synchronize(dev)
    return batch * steps / (time.perf_counter() - t0)
