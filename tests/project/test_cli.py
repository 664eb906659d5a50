"""The command line refuses what would train a silently wrong run, with one short message and no folder left behind,
and picks the paper's method for the zoo it is given."""

import subprocess
import sys

import pytest

from probegen_nb.cli import build_parser, train_config
from probegen_nb.core.zoo_io import load_zoo
from probegen_nb.experiment.config import ProbingConfig
from probegen_nb.probes.images import ConvProbeGenConfig

from paths import REPO, ZOOS


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "probegen_nb.cli", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("option,value,message", [
    ("--n-probes", "0", "ProbingConfig.n_probes (=0) must be an integer of at least 1"),  # exited 0 at chance before
    ("--epochs", "0", "RunConfig.epochs (=0) must be an integer of at least 1"),  # KeyError 'test' before
    ("--epochs", "-1", "RunConfig.epochs (=-1) must be an integer of at least 1"),
    ("--max-train-models", "-5", "RunConfig.max_train_models (=-5) must be an integer of at least 1"),
    ("--probes", "uniform", "probe source 'uniform' makes coordinates probes, but this zoo's models take images"),
])
def test_train_refuses_bad_settings_in_a_line_and_writes_nothing(tmp_path, option, value, message) -> None:
    zoo = ZOOS / ("cifar10-gs-cnn-small" if option == "--probes" else "mnist-inr-small")
    res = cli("train", "--zoo", str(zoo), "--out", str(tmp_path / "run"), option, value)
    assert res.returncode == 1
    assert res.stderr.splitlines()[0] == f"error: {message}" or res.stderr.startswith(f"error: {message}")
    assert "Traceback" not in res.stderr and len(res.stderr.splitlines()) <= 3
    assert not (tmp_path / "run").exists()


def test_train_refuses_cuda_graphs_off_a_gpu_in_a_line_and_writes_nothing(tmp_path) -> None:
    res = cli("train", "--zoo", str(ZOOS / "mnist-inr-small"), "--out", str(tmp_path / "run"), "--device", "cpu",
              "--cuda-graphs")
    assert res.returncode == 1
    assert res.stderr.startswith("error: cuda_graphs=True: CUDA graphs need a CUDA device; "
                                 "train with cuda_graphs=False")
    assert "Traceback" not in res.stderr and not (tmp_path / "run").exists()


def test_debug_shows_the_traceback(tmp_path) -> None:
    res = cli("--debug", "train", "--zoo", str(ZOOS / "mnist-inr-small"), "--out", str(tmp_path / "r"),
              "--n-probes", "0")
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_train_follows_the_zoo_the_papers_method_on_a_cnn_zoo() -> None:
    """`--probes probegen` used to build the coordinate generator at Q = 128 on CNN zoos; the default is now the
    conv generator at Q = 64 and 150 epochs (CIFAR10-GS), and on INR zoos the coordinate generator at Q = 128."""
    args = build_parser().parse_args(["train", "--zoo", "z", "--out", "o"])
    cnn = train_config(args, load_zoo(ZOOS / "cifar10-gs-cnn-small"))
    assert (cnn.method, cnn.epochs) == (ProbingConfig(ConvProbeGenConfig(), 64), 150)
    inr = train_config(args, load_zoo(ZOOS / "mnist-inr-small"))
    assert isinstance(inr.method, ProbingConfig)
    assert (inr.method.probes.kind, inr.method.n_probes, inr.epochs) == ("probegen", 128, 30)
    with pytest.raises(ValueError, match="sources for this zoo: .*probegen-conv"):
        train_config(build_parser().parse_args(["train", "--zoo", "z", "--out", "o", "--probes", "probegen"]),
                     load_zoo(ZOOS / "cifar10-gs-cnn-small"))


def test_notebook_parameters_are_read_as_the_type_the_notebook_declares() -> None:
    """`--set fast=False` injected the text "False", which is truthy, so the notebook ran in fast mode."""
    from probegen_nb.app.runner import notebook_stem, parse_parameters

    got = parse_parameters("02_train_probegen", ["fast=False", "epochs=3", "lr=1e-3", "device=cuda", "seed=7"])
    assert got == {"fast": False, "epochs": 3, "lr": 1e-3, "device": "cuda", "seed": 7}
    assert parse_parameters("02_train_probegen", ["fast=true"]) == {"fast": True}
    assert notebook_stem("00_quickstart.ipynb") == notebook_stem("notebooks/00_quickstart.ipynb") == "00_quickstart"
    with pytest.raises(ValueError, match=r"02_train_probegen has no parameter 'epoch'; its parameters: fast, device"):
        parse_parameters("02_train_probegen", ["epoch=3"])
    with pytest.raises(ValueError, match=r"parameter fast is declared bool; 'Flase' is not one"):
        parse_parameters("02_train_probegen", ["fast=Flase"])
    with pytest.raises(ValueError, match=r"parameter epochs is declared int; '3.5' is not one"):
        parse_parameters("02_train_probegen", ["epochs=3.5"])
    with pytest.raises(ValueError, match=r"no notebook '99_nothing'; the notebooks: 00_quickstart, 01_inr_zoo"):
        notebook_stem("99_nothing")


def test_cli_notebook_refuses_an_unknown_parameter_before_running(tmp_path) -> None:
    res = cli("notebook", "02_train_probegen.ipynb", "--out", str(tmp_path), "--set", "fats=false")
    assert res.returncode == 1 and res.stderr.startswith("error: 02_train_probegen has no parameter 'fats'")
    assert not list(tmp_path.iterdir())


def test_a_run_trained_from_the_root_opens_from_notebooks(tmp_path, monkeypatch) -> None:
    """README's `cli train --zoo data/zoos/...` (relative to the root) must open in notebook 04, whose kernel runs in
    notebooks/; and RunConfig's notebook-relative default zoo must open from the root."""
    from probegen_nb.experiment.config import ProbingConfig, RunConfig
    from probegen_nb.experiment.runs import load_run
    from probegen_nb.experiment.train import train

    root = REPO
    monkeypatch.chdir(root)
    config = RunConfig(zoo_dir="data/zoos/mnist-inr-small", epochs=1, max_train_models=64,
                       method=ProbingConfig(n_probes=4))
    train(config, out_dir=tmp_path / "run", progress=False)
    monkeypatch.chdir(root / "notebooks")
    assert len(load_run(tmp_path / "run").zoo) == 5_500
    monkeypatch.chdir(tmp_path)
    assert len(load_run(tmp_path / "run").zoo) == 5_500
    train(RunConfig(epochs=1, max_train_models=64,
                    method=ProbingConfig(n_probes=4)), out_dir=tmp_path / "default", progress=False)
    monkeypatch.chdir(root)
    assert load_run(tmp_path / "default").config.zoo_dir == "../data/zoos/mnist-inr-small"


def test_the_library_refuses_a_probe_source_made_for_other_models() -> None:
    """Not only the CLI: `build_model` (so `train()`, sweeps and notebooks) refuses coordinate probes on a CNN zoo
    and image probes on an INR zoo, and accepts the fitting ones (negative control)."""
    import torch

    from probegen_nb.experiment.config import ProbingConfig, RunConfig
    from probegen_nb.experiment.train import build_model
    from probegen_nb.probes.coords import UniformConfig
    from probegen_nb.probes.dead_leaves import DeadLeavesConfig

    cnn = load_zoo(ZOOS / "cifar10-gs-cnn-small").subset(range(8))
    inr = load_zoo(ZOOS / "mnist-inr-small").subset(range(8))
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="'uniform' makes coordinates probes, but this zoo's models take images"):
        build_model(RunConfig(method=ProbingConfig(UniformConfig(), 4)), cnn, g)
    with pytest.raises(ValueError, match="'dead-leaves' makes images probes, but this zoo's models take coordinates"):
        build_model(RunConfig(method=ProbingConfig(DeadLeavesConfig(), 4)), inr, g)
    build_model(RunConfig(method=ProbingConfig(DeadLeavesConfig(), 4)), cnn, g)
    build_model(RunConfig(method=ProbingConfig(UniformConfig(), 4)), inr, g)


def test_the_parsers_choices_and_defaults_are_the_librarys() -> None:
    """The parser is built without torch (for a fast --help), from lists written in cli.py: they must be the
    library's own, or the CLI would offer a source, data set or default that does not exist."""
    import dataclasses

    from probegen_nb import cli
    from probegen_nb.app.runner import REPO
    from probegen_nb.core.data import DATASETS
    from probegen_nb.core.engine import EngineConfig
    from probegen_nb.experiment import quickstart
    from probegen_nb.experiment.config import ProbingConfig, RunConfig
    from probegen_nb.probes.registry import PROBE_CONFIGS
    from probegen_nb.zoos.cnn import CNNZooRecipe

    assert cli.DATASETS == DATASETS and cli.REPO == REPO and cli.QUICKSTART == quickstart.NAME
    assert cli.PROBE_SOURCES == {k: c.inputs for k, c in PROBE_CONFIGS.items()}
    recipe = dataclasses.asdict(CNNZooRecipe())
    assert cli.CNN_RECIPE == {k: recipe[k] for k in cli.CNN_RECIPE}
    assert set(recipe) - set(cli.CNN_RECIPE) == {"activations"}  # every option the build-cnn-zoo parser shows
    assert cli.N_WORKERS == EngineConfig.n_workers
    assert cli.QUICKSTART_PROTOCOL == {"n_probes": ProbingConfig().n_probes, "epochs": RunConfig().epochs}


def test_help_and_argument_errors_import_no_torch() -> None:
    """`--help` took about 7 s: torch, dynamo, papermill and dask were imported before the arguments were parsed."""
    code = ("import sys\nfrom probegen_nb.cli import build_parser\n"
            "try:\n    build_parser().parse_args(['train', '--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in ('torch', 'papermill', 'dask', 'pandas', 'numpy') if m in sys.modules)\n"
            "print('heavy:' + ','.join(heavy))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "--n-probes" in res.stdout  # the help was printed
    assert res.stdout.strip().splitlines()[-1] == "heavy:"
