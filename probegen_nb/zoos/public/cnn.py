"""Converters from the two public CNN zoos' distribution formats into the project's zoo format.

- Small CNN Zoo (Unterthiner et al. 2020; google-research/google-research `dnn_predict_accuracy`): one flattened
  TensorFlow model per row of `weights.npy`, one row of `metrics.csv.gz` per row (checkpoint), and `layout.csv`
  saying which slice of a row holds which TensorFlow variable, with its shape.
- CNN Wild Park (Kofinas et al. 2024; mkofinas/neural-graphs `experiments/cnn_generalization`): one torch checkpoint
  per file, `{"model": state_dict, "config": {...}}`, listed in `{split: {"path", "score", "step"}}`.
Nothing is unpickled: `.npy` files are read with `allow_pickle=False`, torch files with `weights_only=True`.
"""

from __future__ import annotations

import json
import math
import random
import re
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from probegen_nb.core.arch.cnn import CNN_ACTIVATIONS, CNNSpec
from probegen_nb.core.zoo import SPLITS, MixedZoo, Task, Zoo, ZooFormatError, stack_state_dicts
from probegen_nb.core.zoo_io import save_zoo
from probegen_nb.zoos.public.layouts import resolve_listed_path

TASK = Task("test_acc", None)  # both zoos: regress each model's test accuracy

# ---------------------------------------------------------------- Small CNN Zoo

SMALL_CNN_ZOO_FILES = ("weights.npy", "metrics.csv.gz", "layout.csv")
FINAL_STEP = 86  # `step` counts epochs; checkpoints at 0, 1, 2, 3, 20, 40, 60, 80 and 86, the end of training
TFVar = tuple[str, int, int, tuple[int, ...]]  # (varname, start, end, TensorFlow shape): row[:, start:end]


def nfn_split(n: int) -> np.ndarray:
    """Split names [n] for n models in their (permuted) order, by NFN's rule: the second half (from int(0.5 n)) is
    test; the first half, shuffled by Python's `random.Random(0)`, gives its first int(0.8 · half) to train and the
    rest to val. Source: `_split_indices_iid` of `ZooDataset` in AllanYangZhou/nfn experiments/data_utils.py, the
    same in `NFNZooDataset` of mkofinas/neural-graphs experiments/data_generalization.py and of jonkahana/ProbeGen
    data.py. For the 30,000 CIFAR10-GS models: 12,000 / 3,000 / 15,000."""
    half = int(0.5 * n)
    trainval = list(range(half))
    random.Random(0).shuffle(trainval)
    n_train = int(0.8 * half)
    split = np.full(n, "test", dtype=object)
    split[trainval[:n_train]] = "train"
    split[trainval[n_train:]] = "val"
    return split


def convert_small_cnn_zoo(root: str | Path, out_dir: str | Path, nfn_order: str | Path | None = None,
                          step: int | Literal["last"] = FINAL_STEP, seed: int = 0, padding: int = 0,
                          overwrite: bool = False) -> MixedZoo:
    """A Small CNN Zoo folder (e.g. CIFAR10-GS) → a zoo folder with one architecture group per activation.

    One checkpoint per run is kept: `step` (86, the end of training) or each run's `"last"`. With `nfn_order` (the
    fixed row order of NFN, Neural Graphs and ProbeGen) rows are permuted and split as they do, else by a `seed`ed
    permutation and the same rule. `padding=0` is Keras' default 'valid', which the zoo was trained with
    (`build_cnn` in dnn_predict_accuracy/train_network.py); NFN's and ProbeGen's PyTorch re-implementations use 1.
    """
    root, out_dir = Path(root), Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} exists; pass overwrite=True to replace it")
    if step != "last" and not isinstance(step, int):
        raise ValueError(f"step must be an epoch number or 'last', got {step!r}")
    for name in SMALL_CNN_ZOO_FILES:
        if not (root / name).is_file():
            raise ZooFormatError(f"{root / name}: missing file (a Small CNN Zoo folder holds {SMALL_CNN_ZOO_FILES})")
    weights_path, metrics_path = root / "weights.npy", root / "metrics.csv.gz"
    weights = _read_weights(weights_path)  # [N, n_params], memory-mapped
    metrics = _read_metrics(metrics_path, weights_path, len(weights))
    layers = _read_layout(root / "layout.csv", weights_path, weights.shape[1])
    if nfn_order is not None:
        order = _read_order(Path(nfn_order), len(weights))
    else:
        order = np.random.default_rng(seed).permutation(len(weights))
    # as NFN: permute the rows, keep one checkpoint per run, split by position in the permuted order
    rows = order[_kept_checkpoints(metrics, step, metrics_path)[order]]  # [M] rows of weights.npy
    if len(rows) == 0:
        raise ZooFormatError(f"{metrics_path}: no checkpoint at step {step!r}")
    repeated = pd.Series(rows).duplicated().to_numpy()
    if repeated.any():  # the public order file starts with a stray header line `0`, which NFN reads as a row index
        warnings.warn(f"{nfn_order}: weights.npy row(s) {sorted(set(rows[repeated].tolist()))} listed twice among "
                      f"the kept checkpoints; kept twice, as NFN does (see model_id/source_row)", stacklevel=2)
    w = np.asarray(weights[rows], dtype=np.float32)  # [M, n_params]
    bad = ~np.isfinite(w).all(axis=1)
    if bad.any():
        r = int(rows[np.argmax(bad)])
        raise ZooFormatError(f"{weights_path}: row {r} (step {metrics['step'].iloc[r]}) has a non-finite value")
    table = _small_cnn_zoo_table(metrics.iloc[rows].reset_index(drop=True), rows, nfn_split(len(rows)))
    info = {"builder": "probegen_nb.zoos.public.cnn.convert_small_cnn_zoo", "source_root": str(root),
            "step": step, "padding": padding, "nfn_order": None if nfn_order is None else str(nfn_order),
            "seed": None if nfn_order is not None else seed,
            "split_rule": "nfn: second half test; first half shuffled by random.Random(0), 80% train / 20% val"}
    acts = table["config_activation"].to_numpy()
    groups = []
    for act in sorted(set(acts)):
        idx = np.flatnonzero(acts == act)
        spec = CNNSpec.small_cnn_zoo(1, act, padding)
        try:
            groups.append(Zoo(spec, _tf_to_torch(w[idx], layers), table.iloc[idx].reset_index(drop=True), TASK,
                              info))
        except ZooFormatError as e:
            raise ZooFormatError(f"{root}: {e}") from None
    zoo = MixedZoo(tuple(groups), TASK, info)
    save_zoo(zoo, out_dir, overwrite=overwrite)
    return zoo


def _read_weights(path: Path) -> np.ndarray:
    try:
        weights = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:  # truncated, not .npy, or an object array (would need pickle)
        raise ZooFormatError(f"{path}: unreadable ({e})") from None
    if weights.ndim != 2 or not np.issubdtype(weights.dtype, np.floating):
        raise ZooFormatError(f"{path}: expected a float matrix [models, parameters], got {weights.dtype} "
                             f"{weights.shape}")
    return weights


def _read_metrics(path: Path, weights_path: Path, n_rows: int) -> pd.DataFrame:
    try:
        metrics = pd.read_csv(path)
    except (OSError, EOFError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise ZooFormatError(f"{path}: unreadable ({e})") from None
    missing = [c for c in ("step", "test_accuracy", "train_accuracy", "config.activation") if c not in metrics]
    if missing:
        raise ZooFormatError(f"{path}: missing column(s) {missing}")
    if len(metrics) != n_rows:
        raise ZooFormatError(f"{weights_path}: {n_rows} rows but {path} has {len(metrics)} (one per row); row "
                             f"{min(n_rows, len(metrics))} is in one file only")
    bad = ~metrics["config.activation"].isin(list(CNN_ACTIVATIONS)).to_numpy()
    if bad.any():
        r = int(np.argmax(bad))
        raise ZooFormatError(f"{path}: row {r}: config.activation {metrics['config.activation'].iloc[r]!r} is not "
                             f"one of {sorted(CNN_ACTIVATIONS)}")
    return metrics


def _read_layout(path: Path, weights_path: Path, row_length: int) -> list[tuple[TFVar, TFVar]]:
    """(kernel, bias) of each layer, layers in the order they first appear in layout.csv (the order NFN reads)."""
    try:
        layout = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise ZooFormatError(f"{path}: unreadable ({e})") from None
    missing = [c for c in ("varname", "start_idx", "end_idx", "shape") if c not in layout]
    if missing:
        raise ZooFormatError(f"{path}: missing column(s) {missing}")
    sizes = [math.prod(_parse_shape(s, path, i)) for i, s in enumerate(layout["shape"])]
    if sum(sizes) != row_length:
        raise ZooFormatError(f"{weights_path}: every row has {row_length} values but {path} lays out {sum(sizes)}")
    layers: dict[str, dict[str, TFVar]] = {}
    for i, row in enumerate(layout.to_dict("records")):
        name, start, end, shape = str(row["varname"]), int(row["start_idx"]), int(row["end_idx"]), \
            _parse_shape(row["shape"], path, i)
        m = re.fullmatch(r"(.*)/(kernel|bias):0", name)
        if m is None:
            raise ZooFormatError(f"{path}: row {i}: variable {name!r} is neither a kernel nor a bias")
        if not 0 <= start <= end <= row_length or end - start != math.prod(shape):
            raise ZooFormatError(f"{path}: row {i}: {name!r} slice [{start}, {end}) does not hold shape {shape} "
                                 f"within rows of {row_length} values")
        layers.setdefault(m[1], {})[m[2]] = (name, start, end, shape)
    expected = CNNSpec.small_cnn_zoo(1).param_shapes()  # layers.<i>.weight/bias, then fc.weight/bias
    names = [k.removesuffix(".weight") for k in expected if k.endswith(".weight")]
    if len(layers) != len(names) or any(set(v) != {"kernel", "bias"} for v in layers.values()):
        raise ZooFormatError(f"{path}: variables {list(layers)} should be {len(names)} layers with a kernel and a "
                             f"bias each")
    for name, var in zip(names, layers.values()):
        torch_shape = _torch_shape(var["kernel"][3])
        if torch_shape != expected[f"{name}.weight"] or var["bias"][3] != expected[f"{name}.bias"]:
            raise ZooFormatError(f"{path}: {var['kernel'][0]!r} {var['kernel'][3]} / {var['bias'][0]!r} "
                                 f"{var['bias'][3]} do not fit {name} {expected[f'{name}.weight']}")
    return [(v["kernel"], v["bias"]) for v in layers.values()]


def _parse_shape(text: Any, path: Path, row: int) -> tuple[int, ...]:
    """'(3, 3, 1, 16)' or '(16,)' → a tuple, without evaluating the text."""
    m = re.fullmatch(r"\s*[(\[]\s*(\d+(?:\s*,\s*\d+)*)\s*,?\s*[)\]]\s*", str(text))
    if m is None:
        raise ZooFormatError(f"{path}: row {row}: shape {text!r} is not a tuple of sizes")
    return tuple(int(s) for s in m[1].split(","))


def _torch_shape(tf_shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(tf_shape) == 4:  # conv kernel [kh, kw, in, out] → [out, in, kh, kw]
        return (tf_shape[3], tf_shape[2], tf_shape[0], tf_shape[1])
    return tuple(reversed(tf_shape))  # dense kernel [in, out] → [out, in]


def _tf_to_torch(w: np.ndarray, layers: list[tuple[TFVar, TFVar]]) -> dict[str, torch.Tensor]:
    """Flat TensorFlow rows [M, n_params] → stacked PyTorch parameters, keyed as CNN's state_dict."""
    m, params = len(w), {}
    for i, ((_, k0, k1, k_shape), (_, b0, b1, b_shape)) in enumerate(layers):
        name = "fc" if i == len(layers) - 1 else f"layers.{i}"
        kernel = w[:, k0:k1].reshape(m, *k_shape)  # [M, kh, kw, in, out] or [M, in, out]
        kernel = kernel.transpose(0, 4, 3, 1, 2) if kernel.ndim == 5 else kernel.transpose(0, 2, 1)
        params[f"{name}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel))  # [M, out, in, (kh, kw)]
        params[f"{name}.bias"] = torch.from_numpy(w[:, b0:b1].reshape(m, *b_shape).copy())  # [M, out]
    return params


def _read_order(path: Path, n_rows: int) -> np.ndarray:
    """Row indices, one a line, read as NFN reads them (pandas, header=None). The public file's first line is a
    stray header `0` that NFN takes for a row index; it is kept, so the split is exactly NFN's."""
    try:
        values = pd.read_csv(path, header=None)
    except (OSError, EOFError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise ZooFormatError(f"{path}: unreadable ({e})") from None
    if values.shape[1] != 1:
        raise ZooFormatError(f"{path}: expected one row index per line, got {values.shape[1]} columns")
    order = pd.to_numeric(values[0], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(order) | (order != np.round(order)) | (order < 0) | (order >= n_rows)
    if bad.any():
        line = int(np.argmax(bad))
        value = values[0].iloc[line]
        value = value.item() if isinstance(value, np.generic) else value  # quote 14, not np.int64(14)
        raise ZooFormatError(f"{path}: line {line + 1}: {value!r} is not a row of weights.npy (0 … {n_rows - 1})")
    order = order.astype(np.int64)
    unlisted = np.setdiff1d(np.arange(n_rows), order)
    if len(unlisted):
        raise ZooFormatError(f"{path}: does not list row {unlisted[0]} of weights.npy ({len(unlisted)} rows "
                             f"missing); is it the order file of this zoo?")
    return order


def _kept_checkpoints(metrics: pd.DataFrame, step: int | Literal["last"], path: Path) -> np.ndarray:
    """[N] bool: the rows at `step`, or each run's last row (runs told apart by `modeldir`)."""
    steps = pd.to_numeric(metrics["step"], errors="coerce")
    if step != "last":
        return (steps == step).to_numpy()
    if "modeldir" not in metrics:
        raise ZooFormatError(f"{path}: step='last' needs the 'modeldir' column to tell runs apart")
    return (steps == steps.groupby(metrics["modeldir"]).transform("max")).to_numpy()


def _small_cnn_zoo_table(metrics: pd.DataFrame, rows: np.ndarray, split: np.ndarray) -> pd.DataFrame:
    """models.csv rows: ids, split, labels, then every other metrics column with a CSV-friendly name."""
    test, train = metrics["test_accuracy"].astype(float), metrics["train_accuracy"].astype(float)
    table = pd.DataFrame({"model_id": np.arange(len(rows)), "split": split, "test_acc": test, "train_acc": train,
                          "gap": train - test,  # generalisation gap, positive when the model overfits
                          "step": metrics["step"].astype(int), "source_row": rows})
    rest = metrics.drop(columns=["test_accuracy", "train_accuracy", "step"])
    rest.columns = [re.sub(r"[^0-9A-Za-z_]+", "_", str(c)).strip("_") for c in rest.columns]
    clash = sorted(set(rest.columns) & set(table.columns) | set(rest.columns[rest.columns.duplicated()]))
    if clash:
        raise ZooFormatError(f"metrics.csv.gz: column name(s) {clash} clash once made CSV-friendly")
    return pd.concat([table, rest], axis=1)


# ---------------------------------------------------------------- CNN Wild Park

WILD_PARK_CONFIG = ("n_layers", "n_classes", "channels", "kernel_size", "stride", "padding", "residual", "activation")


def convert_cnn_wild_park(root: str | Path, splits_json: str | Path, out_dir: str | Path,
                          overwrite: bool = False) -> MixedZoo:
    """CNN Wild Park (one `{"model", "config"}` checkpoint per file, `{split: {path, score, step}}`) → a zoo folder
    with one group per distinct architecture, residual connections kept. Public Wild Park architectures are sampled
    at random, so they are mostly distinct: a group is usually the checkpoints of one run, and small.

    Checkpoints must load with `weights_only=True`; a config saved as an OmegaConf object (as train_cnn_park.py
    writes it) is refused and has to be re-saved as a plain dict first."""
    root, splits_json, out_dir = Path(root), Path(splits_json), Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} exists; pass overwrite=True to replace it")
    rows: list[dict[str, Any]] = []
    state_dicts: list[dict[str, torch.Tensor]] = []
    names: list[str] = []
    by_spec: dict[CNNSpec, list[int]] = {}  # architecture → positions in rows, in json order
    for split, rel, score, step in tqdm(_read_wild_park_splits(splits_json), desc="reading CNNs", unit="CNN"):
        path = resolve_listed_path(root, rel)
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise ZooFormatError(f"{splits_json}: {split} checkpoint {rel!r} not found under {root}") from None
        except Exception as e:  # truncated/corrupt file, or a pickle with code or non-plain objects in it
            first = (str(e).strip().splitlines() or [""])[0]
            raise ZooFormatError(f"{path}: unreadable checkpoint ({type(e).__name__}: {first})") from None
        if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict) or "config" not in ckpt:
            got = f"a dict with keys {list(ckpt)}" if isinstance(ckpt, dict) else f"a {type(ckpt).__name__}"
            raise ZooFormatError(f"{path}: expected a dict with a 'model' state_dict and a 'config', got {got}")
        by_spec.setdefault(_wild_park_spec(ckpt["config"], path), []).append(len(rows))
        rows.append({"model_id": len(rows), "split": split, "test_acc": score, "step": step,
                     "run": Path(rel).parent.parent.name, "source_path": rel})
        state_dicts.append(ckpt["model"])
        names.append(str(path))
    if not rows:
        raise ZooFormatError(f"{splits_json}: lists no checkpoints")
    table = pd.DataFrame(rows)
    info = {"builder": "probegen_nb.zoos.public.cnn.convert_cnn_wild_park", "source_root": str(root),
            "splits_json": str(splits_json)}
    groups = []
    for spec, idx in by_spec.items():
        params = stack_state_dicts([state_dicts[i] for i in idx], spec, [names[i] for i in idx])
        try:
            groups.append(Zoo(spec, params, table.iloc[idx].reset_index(drop=True), TASK, info))
        except ZooFormatError as e:
            raise ZooFormatError(f"{root}: {e}") from None
    zoo = MixedZoo(tuple(groups), TASK, info)
    save_zoo(zoo, out_dir, overwrite=overwrite)
    return zoo


def _read_wild_park_splits(path: Path) -> list[tuple[str, str, float, int]]:
    """(split, path, score, step) per checkpoint, in the json's order."""
    try:
        splits = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ZooFormatError(f"{path}: unreadable splits file ({e})") from None
    if not isinstance(splits, dict):
        raise ZooFormatError(f"{path}: expected {{split: {{path, score, step}}}}, got {type(splits).__name__}")
    entries: list[tuple[str, str, float, int]] = []
    for split, lists in splits.items():
        if split not in SPLITS:
            raise ZooFormatError(f"{path}: unknown split {split!r}; expected {SPLITS}")
        if not isinstance(lists, dict) or not all(isinstance(lists.get(k), list) for k in ("path", "score", "step")):
            raise ZooFormatError(f"{path}: split {split!r} needs 'path', 'score' and 'step' lists")
        if not len(lists["path"]) == len(lists["score"]) == len(lists["step"]):
            raise ZooFormatError(f"{path}: split {split!r} has {len(lists['path'])} paths, "
                                 f"{len(lists['score'])} scores and {len(lists['step'])} steps")
        for i, (rel, score, step) in enumerate(zip(lists["path"], lists["score"], lists["step"])):
            if not isinstance(rel, str) or not isinstance(score, (int, float)) or not isinstance(step, int):
                raise ZooFormatError(f"{path}: {split} entry {i}: path {rel!r}, score {score!r}, step {step!r} "
                                     f"should be a string, a number and an integer")
            entries.append((split, rel, float(score), step))
    return entries


def _wild_park_spec(config: Any, path: Path) -> CNNSpec:
    """The checkpoint's config (`channels` = [in, c1, …], per-layer lists) → CNNSpec, errors naming the file."""
    if not isinstance(config, dict):
        raise ZooFormatError(f"{path}: 'config' is a {type(config).__name__}, expected a dict")
    missing = [k for k in WILD_PARK_CONFIG if k not in config]
    if missing:
        raise ZooFormatError(f"{path}: config lacks {missing}")
    c = config
    try:
        if not isinstance(c["channels"], list) or len(c["channels"]) != int(c["n_layers"]) + 1:
            raise ValueError(f"channels {c['channels']!r} should list in_channels and n_layers={c['n_layers']} "
                             f"widths")
        return CNNSpec(in_channels=int(c["channels"][0]), channels=tuple(int(x) for x in c["channels"][1:]),
                       kernel_size=tuple(int(x) for x in c["kernel_size"]),
                       stride=tuple(int(x) for x in c["stride"]), padding=tuple(int(x) for x in c["padding"]),
                       activation=tuple(str(x) for x in c["activation"]),
                       residual=tuple(int(x) for x in c["residual"]), out_dim=int(c["n_classes"]))
    except (TypeError, ValueError) as e:
        raise ZooFormatError(f"{path}: config is not a CNN Wild Park architecture ({e})") from None
