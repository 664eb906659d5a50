"""Shared fixtures. `browser`: a headless Chromium for tests that look at pages the way a reader would;
`fake_images`: small made-up image data sets that zoos fit quickly; `class_shift_zoo`: a SIREN zoo whose label
any weight-space method can decode."""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from probegen_nb.core.arch.siren import SirenSpec
from probegen_nb.core.data import ImageDataset
from probegen_nb.core.zoo import Task, Zoo
from probegen_nb.viz.browser import chromium_path, launch
from probegen_nb.zoos.inr import init_siren_params


def _unavailable(reason: str) -> None:
    """CI sets PROBEGEN_REQUIRE_BROWSER=1 so a missing browser fails there instead of silently skipping."""
    if os.environ.get("PROBEGEN_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (PROBEGEN_REQUIRE_BROWSER=1)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A launched playwright (sync API) Browser on the system Chromium, closed with everything it started."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        _unavailable(f"playwright is not installed ({e})")
    if chromium_path() is None:
        _unavailable("no Chromium found (install Debian `chromium` or set PROBEGEN_CHROMIUM)")
    playwright = sync_playwright().start()
    try:
        chromium = launch(playwright)
    except Exception as e:  # noqa: BLE001 (reported as the skip/fail reason)
        playwright.stop()
        _unavailable(f"Chromium at {chromium_path()} did not start: {e}")
    try:
        yield chromium
    finally:
        chromium.close()
        playwright.stop()


def blobs(n_train: int, n_test: int) -> ImageDataset:
    """28×28 smooth blobs whose position depends on the class (INRs fit them quickly, like digits)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:28, 0:28]

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(n) % 10
        cx, cy = 6 + 1.6 * labels + rng.normal(0, 1, n), 14 + rng.normal(0, 2, n)
        img = np.exp(-((xx[None] - cx[:, None, None]) ** 2 + (yy[None] - cy[:, None, None]) ** 2) / 18)
        return (img * 255).astype(np.uint8), labels.astype(np.int64)

    return ImageDataset("blobs", *make(n_train), *make(n_test), tuple("0123456789"), "test fixture")


def stripes(n_train: int, n_test: int) -> ImageDataset:
    """32×32 noise with a bright horizontal bar at a class-dependent height (CNNs learn it in a few steps)."""
    rng = np.random.default_rng(0)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % 10
        img = rng.integers(0, 60, (n, 32, 32)).astype(np.uint8)
        for i, c in enumerate(y):
            img[i, 3 * c:3 * c + 3] = 255
        return img, y.astype(np.int64)

    return ImageDataset("stripes", *make(n_train), *make(n_test), tuple("0123456789"), "test fixture")


@pytest.fixture(scope="session")
def fake_images() -> SimpleNamespace:
    """`fake_images.blobs(n_train, n_test)`, `fake_images.stripes(n_train, n_test)`."""
    return SimpleNamespace(blobs=blobs, stripes=stripes)


@pytest.fixture(scope="session")
def class_shift_zoo() -> Zoo:
    """120 SIRENs whose class shifts the whole output layer (weights and bias): decodable from the weights, by
    statistics and unchanged by hidden-unit permutations (80 train, 20 val, 20 test, 3 classes)."""
    m = 120
    params = init_siren_params(SirenSpec(), m, torch.Generator().manual_seed(0))
    labels = np.arange(m) % 3
    shift = torch.tensor(labels - 1.0, dtype=torch.float32)
    params["seq.2.weight"] = params["seq.2.weight"] + 0.5 * shift[:, None, None]
    params["seq.2.bias"] = params["seq.2.bias"] + 0.5 * shift[:, None]
    table = pd.DataFrame({"model_id": range(m), "split": ["train"] * 80 + ["val"] * 20 + ["test"] * 20,
                          "label": labels})
    return Zoo(SirenSpec(), params, table, Task("label", 3))


@pytest.fixture(scope="module")
def bias_sign_zoo() -> Zoo:
    """120 SIRENs whose label is decodable from their weights (the sign pattern of the output bias)."""
    m = 120
    params = init_siren_params(SirenSpec(), m, torch.Generator().manual_seed(0))
    labels = np.arange(m) % 3
    params["seq.2.bias"] = torch.tensor(labels - 1.0, dtype=torch.float32)[:, None] * 1.5
    table = pd.DataFrame({"model_id": range(m), "split": ["train"] * 80 + ["val"] * 20 + ["test"] * 20,
                          "label": labels})
    return Zoo(SirenSpec(), params, table, Task("label", 3))
