"""Safe writes and resumable jobs: a crash never leaves a half-written file, and a killed build continues.

A long build is split into numbered chunks saved in `.<name>.partial/` beside its output as they finish; running it
again with the same parameters skips the chunks already there. `job.json` records the parameters so a partial build
is never mixed with a different one. The chunks still to do run as tasks of an engine (`core.engine`: here, or on
Dask workers); their results come back to this process, which alone writes the chunk files, so workers need no shared
disk and the engine does not change what is saved.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from probegen_nb.core.engine import EngineConfig, TaskError, map_tasks, run_task


def umask() -> int:
    """The process's umask, read without changing it where Linux shows it (os.umask sets it to read it, for a moment
    in which another thread's files would get the wrong mode)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


def share_mode(path: Path) -> None:
    """Give a written file (or folder) the mode a plain `open` (`mkdir`) would: 0666 (0777) less the umask, 0644
    (0755) usually. safetensors writes 0600 and mkdtemp 0700, which left checkpoints private to their writer."""
    path.chmod((0o777 if path.is_dir() else 0o666) & ~umask())


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    share_mode(tmp)
    os.replace(tmp, path)


def write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def save_tensors_atomic(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
    share_mode(tmp)
    os.replace(tmp, path)


class ChunkError(RuntimeError):
    """Chunks of a build that raised (or whose worker died). Every other chunk finished and is saved, so running the
    build again with the same parameters retries only these. `errors`: chunk -> what went wrong."""

    def __init__(self, message: str, errors: dict[int, TaskError]) -> None:
        super().__init__(message)
        self.errors = errors


class ResumableJob:
    """The chunk store of one build writing `out_dir`."""

    def __init__(self, out_dir: Path, parameters: dict[str, Any]) -> None:
        self.out_dir = out_dir
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

    def run(self, fn: Callable[..., dict[str, torch.Tensor]], tasks: dict[int, tuple],
            engine: EngineConfig | None = None, on_done: Callable[[int], None] = lambda chunk: None,
            describe: Callable[[int], str] = lambda chunk: f"chunk {chunk}") -> None:
        """`fn(*tasks[c])` for each chunk c, as tasks of `engine` (None: here, one after another, at this process's
        own thread choice), saving each returned chunk here as it arrives, then `on_done(c)` (a progress bar).

        A killed build loses only the chunks running then, and no chunk is saved twice. A chunk that raised is not
        saved: once every other chunk has finished, one `ChunkError` names them all (`describe(c)`)."""
        todo = sorted(tasks)
        args = [tasks[c] for c in todo]
        results = (map_tasks(fn, args, engine) if engine is not None
                   else ((i, run_task(fn, a, None)) for i, a in enumerate(args)))
        failed: dict[int, TaskError] = {}
        for i, result in results:
            if isinstance(result, TaskError):
                failed[todo[i]] = result
                continue
            self.save(todo[i], result)
            on_done(todo[i])
        if failed:
            first, error = min(failed.items())
            raise ChunkError(
                f"{self.out_dir}: {len(failed)} of {len(todo)} chunks failed "
                f"({'; '.join(f'{describe(c)}: {e}' for c, e in sorted(failed.items()))}). The others are saved in "
                f"{self.work}: run the build again with the same parameters to retry only these."
                + (f"\n{describe(first)}, where it raised:\n{error.traceback}" if error.traceback else ""), failed)

    def finish(self) -> None:
        """Remove the chunks once the output is safely written."""
        shutil.rmtree(self.work)


def engine_info(engine: EngineConfig | None) -> dict[str, str | int | None]:
    """How a build's chunks ran (`ResumableJob.run`'s engine), for its `zoo.json`; threads None: the building
    process's own choice."""
    return {"engine": "local" if engine is None else engine.kind,
            "threads_per_task": None if engine is None else engine.threads_per_worker}


def software_versions() -> dict[str, str]:
    """What a build ran on, for the provenance in `zoo.json`."""
    try:
        ours = metadata.version("probegen-nb")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        ours = "unknown"
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "probegen_nb": ours}
