"""Safe writes and resumable jobs: a crash never leaves a half-written file, and a killed build continues.

A long build is split into numbered chunks saved in `.<name>.partial/` beside its output as they finish; running it
again with the same parameters skips the chunks already there. `job.json` records the parameters so a partial build
is never mixed with a different one.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def save_tensors_atomic(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp)
    os.replace(tmp, path)


class ResumableJob:
    """The chunk store of one build writing `out_dir`."""

    def __init__(self, out_dir: Path, parameters: dict[str, Any]) -> None:
        self.work = out_dir.parent / f".{out_dir.name}.partial"
        self.work.mkdir(parents=True, exist_ok=True)
        job_file = self.work / "job.json"
        normalised = json.loads(json.dumps(parameters))
        if job_file.exists() and json.loads(job_file.read_text()) != normalised:
            raise ValueError(f"{self.work} holds a partial build of a different plan/recipe; delete it or rerun "
                             f"with the same parameters")
        write_text_atomic(job_file, json.dumps(normalised))

    def path(self, chunk: int) -> Path:
        return self.work / f"chunk_{chunk:05d}.safetensors"

    def done(self, chunk: int) -> bool:
        return self.path(chunk).exists()

    def save(self, chunk: int, tensors: dict[str, torch.Tensor]) -> None:
        save_tensors_atomic(self.path(chunk), tensors)

    def load(self, chunk: int) -> dict[str, torch.Tensor]:
        return load_file(self.path(chunk))

    def finish(self) -> None:
        """Remove the chunks once the output is safely written."""
        shutil.rmtree(self.work)


def software_versions() -> dict[str, str]:
    """What a build ran on, for the provenance in `zoo.json`."""
    try:
        ours = metadata.version("probegen-nb")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        ours = "unknown"
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "probegen_nb": ours}
