import pytest
import torch

from splitleak.classifier import train_classifier
from splitleak.metrics.semantic import semantic_correct


def test_classifier_trained_on_aux_recognises_test_images(tiny_splits) -> None:
    clf = train_classifier(tiny_splits.aux, tiny_splits.spec, tiny_splits.num_classes, epochs=8, batch_size=32)
    correct = semantic_correct(clf, tiny_splits.test.x, tiny_splits.test.y)
    assert correct.shape == (len(tiny_splits.test),) and set(correct.unique().tolist()) <= {0.0, 1.0}
    assert correct.mean() > 0.6  # 10 classes
    noise = torch.rand_like(tiny_splits.test.x)
    assert semantic_correct(clf, noise, tiny_splits.test.y).mean() < 0.35  # noise does not leak labels


def test_seeded_and_validated(tiny_splits) -> None:
    a = train_classifier(tiny_splits.aux, tiny_splits.spec, 10, epochs=1, seed=5)
    b = train_classifier(tiny_splits.aux, tiny_splits.spec, 10, epochs=1, seed=5)
    x = tiny_splits.test.x[:8]
    torch.testing.assert_close(a(x), b(x))
    with pytest.raises(ValueError, match="labels"):
        semantic_correct(a, x, tiny_splits.test.y[:3])
    with pytest.raises(ValueError, match="at least 2"):
        train_classifier(tiny_splits.aux.head(1), tiny_splits.spec, 10)


def test_classifier_does_not_start_from_the_victims_initial_weights(tiny_splits) -> None:
    from splitleak.training import TrainConfig, build_split_model

    victim_init = build_split_model(TrainConfig(seed=0), tiny_splits)  # what the trainer builds with seed 0
    clf = train_classifier(tiny_splits.aux, tiny_splits.spec, 10, epochs=1, seed=0, lr=0.0)
    assert not torch.equal(clf.net[0][0].weight, victim_init.encoder[0][0].weight)


def test_the_shared_classifier_is_trained_once_per_auxiliary_data(tiny_splits) -> None:
    from splitleak.classifier import shared_classifier

    args = (tiny_splits.aux, tiny_splits.spec, 10)
    first = shared_classifier(*args, arch="small-cnn", epochs=1, seed=3)
    assert shared_classifier(*args, arch="small-cnn", epochs=1, seed=3) is first  # the next model of a study reuses it
    fresh = train_classifier(*args, arch="small-cnn", epochs=1, seed=3)
    x = tiny_splits.test.x[:8]
    torch.testing.assert_close(first(x), fresh(x))  # the same classifier a fresh training gives
    assert shared_classifier(*args, arch="small-cnn", epochs=1, seed=4) is not first
    changed = tiny_splits.aux.head(len(tiny_splits.aux) - 1)  # other auxiliary images: trained anew
    assert shared_classifier(changed, tiny_splits.spec, 10, arch="small-cnn", epochs=1, seed=3) is not first
