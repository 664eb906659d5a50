"""The public API at the package's top level: the README's example, end to end at small sizes, and every exported
name resolves (a renamed module would otherwise break `pg.<name>` only for the user who calls it)."""


import pytest

import probegen_nb as pg

from paths import ZOOS

ZOO = ZOOS / "mnist-inr-small"


def test_every_public_name_resolves_and_a_typo_lists_them() -> None:
    for name in pg.__all__:
        assert getattr(pg, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'load_zooo'; the public API: .*load_zoo"):
        pg.load_zooo  # noqa: B018


def test_the_readme_example_at_small_sizes(tmp_path) -> None:
    zoo = pg.load_zoo(ZOO)
    small = pg.RunConfig(epochs=1, max_train_models=128, method=pg.ProbingConfig(n_probes=8))
    run = pg.train(small, zoo, out_dir=tmp_path / "api", progress=False)
    again = pg.load_run(tmp_path / "api", zoo)
    assert again.metrics["test_accuracy"] == run.metrics["test_accuracy"] and again.config == small
    sweep = pg.Sweep("q", pg.grid(small, {"q4": {"n_probes": 4}, "q8": {}}, [0, 1]), tmp_path / "q")
    table = pg.compare_variants(pg.run_sweep(sweep, progress=False), "test_accuracy", "q8")
    assert sorted(table.index) == ["q4", "q8"] and (table["n"] == 2).all()
