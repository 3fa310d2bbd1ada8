import numpy as np
import torch

from splitleak.reports.gallery import extremes, to_image
from splitleak.reports.runs import Run, collect_runs


def test_grey_images_keep_their_values_and_orientation() -> None:
    x = torch.arange(12, dtype=torch.float32).reshape(1, 3, 4) / 11
    image, kwargs = to_image(x, (0.0, 1.0))
    np.testing.assert_allclose(image, x[0].numpy(), rtol=1e-6)  # row 0 stays the top row
    assert kwargs == {"cmap": "gray", "vmin": 0.0, "vmax": 1.0}
    _, kwargs = to_image(x, (-1.0, 1.0))
    assert (kwargs["vmin"], kwargs["vmax"]) == (-1.0, 1.0)  # fixed to the value range, not the data


def test_rgb_images_are_scaled_from_the_value_range() -> None:
    x = torch.zeros(3, 32, 32)
    x[0, 0, 0] = 1.0
    x[2, -1, -1] = -1.0
    image, kwargs = to_image(x, (-1.0, 1.0))
    assert image.shape == (32, 32, 3) and kwargs == {}
    assert image[0, 0, 0] == 1.0 and image[-1, -1, 2] == 0.0 and image[5, 5, 1] == 0.5


def test_extremes_fall_back_to_the_gallery_and_use_stored_ones(report_dirs) -> None:
    run = collect_runs(report_dirs[0])[0]
    ssim = run.table[(run.table.attack == "rmle") & (run.table.metric == "ssim")].set_index("sample")["value"]
    found = extremes(run, "rmle")  # evaluate stores the extremes of all scored images
    assert found is not None and found.scope == "all"
    assert found.scores[0] == ssim.max() and found.scores[2] == ssim.min()
    gallery_only = {k: v for k, v in run.reconstructions.items() if not k.startswith("extremes/")}
    found = extremes(Run(run.run, run.label, run.table, run.provenance, gallery_only, run.source), "rmle")
    gallery = run.reconstructions["indices"].tolist()
    assert found is not None and found.scope == "gallery" and set(found.samples) <= set(gallery)
    assert found.scores[0] >= found.scores[1] >= found.scores[2]
    assert found.scores[0] == ssim[gallery].max() and found.scores[2] == ssim[gallery].min()
    stored = {
        "extremes/rmle/indices": torch.tensor([5, 6, 7]),
        "extremes/rmle/original": torch.zeros(3, 1, 28, 28),
        "extremes/rmle/reconstruction": torch.ones(3, 1, 28, 28),
    }
    with_stored = Run(run.run, run.label, run.table, run.provenance, {**run.reconstructions, **stored}, run.source)
    found = extremes(with_stored, "rmle")
    assert found.scope == "all" and found.samples == (5, 6, 7) and float(found.reconstructions.mean()) == 1.0
