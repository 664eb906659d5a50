"""Float16 storage of a zoo: what it changes in the models' answers and labels (`zoos.rounding`)."""

from pathlib import Path

import torch

from probegen_nb.core.data import images_to_inputs
from probegen_nb.core.zoo_io import load_zoo, save_zoo
from probegen_nb.probes.dead_leaves import dead_leaves
from probegen_nb.zoos.cnn import CNNZooRecipe, build_cnn_zoo
from probegen_nb.zoos.rounding import rounding_effect


def test_float16_storage_changes_answers_slightly_and_labels_not_at_all(fake_images, tmp_path: Path) -> None:
    data = fake_images.stripes(200, 150)
    zoo32 = build_cnn_zoo(data, tmp_path / "z32", n_runs=6, recipe=CNNZooRecipe(epochs=2, batch_size=16),
                          chunk_size=6, seed=0, device="cpu")
    zoo16 = load_zoo(save_zoo(zoo32, tmp_path / "z16", weights_dtype="float16"))
    probes = dead_leaves(16, 1, 32, torch.Generator().manual_seed(0))
    test_x, test_y = images_to_inputs(data.test_images), torch.as_tensor(data.test_labels)
    effect = rounding_effect(zoo32, zoo16, probes, test_x, test_y)
    assert effect.n_models == 6
    assert 0 < effect.max_response_diff < 1e-2  # it did round, and only at float16's precision
    assert effect.max_accuracy_diff <= 1 / 150 and effect.n_labels_changed <= 1  # at most one image flips
    same = rounding_effect(zoo32, zoo32, probes, test_x, test_y)
    assert same.max_response_diff == 0 and same.max_accuracy_diff == 0  # the labels are the float32 accuracies


def test_a_changed_model_is_caught(fake_images, tmp_path: Path) -> None:
    """The negative control: a model whose weights really differ is reported, in answers and in its label."""
    data = fake_images.stripes(200, 150)
    zoo32 = build_cnn_zoo(data, tmp_path / "z32", n_runs=4, recipe=CNNZooRecipe(epochs=2, batch_size=16),
                          chunk_size=4, seed=0, device="cpu")
    broken = load_zoo(tmp_path / "z32")
    group = broken.groups[0]
    group.params["fc.weight"][0] = -group.params["fc.weight"][0]  # the first model now ranks classes backwards
    probes = dead_leaves(8, 1, 32, torch.Generator().manual_seed(0))
    effect = rounding_effect(zoo32, broken, probes, images_to_inputs(data.test_images),
                             torch.as_tensor(data.test_labels))
    assert effect.max_response_diff > 0.01 and effect.n_labels_changed >= 1
