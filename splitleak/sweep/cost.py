"""A rough cost model for `splitleak sweep --dry-run`: seconds of one CPU core per job.

training    = training images x epochs / throughput(arch) / slowdown(defense, server, detector)
evaluation  = the attack's budget (epochs x auxiliary images, or steps x test images) / its
              throughput, + the attacker's semantic classifier, LPIPS and a fixed overhead

Throughputs were measured with torch on one thread of a 2-core x86 CPU (small-cnn on 28x28
Fashion-MNIST, cifar-cnn on 3x32x32 inputs, batch 256); other machines, more threads and GPUs
differ, so the result is an estimate to size a grid with, not a promise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from splitleak.attacks import ATTACKS
from splitleak.attacks.base import WorkSize
from splitleak.data import resolve_defaults
from splitleak.defenses import DEFENSES
from splitleak.detection import DETECTORS
from splitleak.protocol import SERVERS
from splitleak.sweep.grid import SweepCell
from splitleak.training import TrainConfig

# images per second, training (forward + backward), one thread
TRAIN_IMAGES_PER_SECOND = {"small-cnn": 2400.0, "cifar-cnn": 500.0, "resnet18": 40.0}  # resnet18: 32x32, estimated (0.56 GMAC per forward)
DEFAULT_TRAIN_IMAGES_PER_SECOND = 500.0
# training speed relative to honest, undefended, unwatched training: the `training_speed` of the
# defense's, the server's and the detector's classes (1.0 where a class declares none), multiplied
# attack work in seconds on small-cnn: each attack class's `estimate_seconds`; other
# architectures scale by their training speed
LPIPS_PAIRS_PER_SECOND = 400.0
OVERHEAD_SECONDS = 2.0  # loading data, checkpoints and results, dCor, scoring
# sizes of the registered datasets' parts (train, test), to size jobs without loading them
DATASET_SIZES = {"fashion-mnist": (60_000, 10_000), "mnist": (60_000, 10_000), "cifar10": (50_000, 10_000), "digits": (1_437, 360), "photo-patches": (20_000, 10_000)}


@dataclass(frozen=True)
class Sizes:
    train: int
    aux: int
    test: int


def sizes(cell: SweepCell) -> Sizes:
    """Training, auxiliary and attacked test images of a cell (from the configs and known dataset sizes)."""
    train_total, test_total = DATASET_SIZES.get(cell.data.dataset, (60_000, 10_000))
    data = resolve_defaults(cell.data, train_total)
    pool, aux = data.aux_pool, data.aux_size
    assert pool is not None and aux is not None
    train = min(data.limit_train or train_total, max(0, train_total - pool))
    test = min(x for x in (data.limit_test, cell.evaluation.limit, test_total) if x is not None)
    return Sizes(train=train, aux=aux, test=test)


def _arch_factor(arch: str) -> float:
    rate = TRAIN_IMAGES_PER_SECOND.get(arch, DEFAULT_TRAIN_IMAGES_PER_SECOND)
    return TRAIN_IMAGES_PER_SECOND["small-cnn"] / rate


def training_speed(train: TrainConfig) -> float:
    """Training throughput relative to honest, undefended training without a detector: the product
    of the defense's, the server's and the detector's declared `training_speed`."""
    classes = [DEFENSES[train.defense], SERVERS[train.server]] + ([DETECTORS[train.detector]] if train.detector else [])
    return math.prod(getattr(cls, "training_speed", 1.0) for cls in classes)


def training_seconds(cell: SweepCell) -> float:
    """Estimated seconds of one core to train the cell's model (once per checkpoint)."""
    t = cell.train
    rate = TRAIN_IMAGES_PER_SECOND.get(t.arch, DEFAULT_TRAIN_IMAGES_PER_SECOND) * training_speed(t)
    return sizes(cell).train * t.epochs / rate + OVERHEAD_SECONDS


def evaluation_seconds(cell: SweepCell) -> float:
    """Estimated seconds of one core to attack and score one cell."""
    ev, n = cell.evaluation, sizes(cell)
    work = 0.0
    for attack in ev.attacks:
        cls = ATTACKS[attack]
        config = cls.config_class.from_dict(dict(ev.attack_params.get(attack, {}))).scaled(ev.budget_scale)
        work += cls.estimate_seconds(config, WorkSize(aux=n.aux, scored=n.test, device=ev.device))
    factor = _arch_factor(cell.train.arch)
    semantic = ev.semantic_epochs * n.aux / TRAIN_IMAGES_PER_SECOND["small-cnn"]
    lpips = n.test / LPIPS_PAIRS_PER_SECOND if ev.lpips else 0.0
    return factor * (work + semantic) + lpips + OVERHEAD_SECONDS


def duration(seconds: float) -> str:
    """Seconds as a short human duration: '40 s', '12 min', '3 h 05 min'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min"
    hours, rest = divmod(round(minutes), 60)
    return f"{hours} h {rest:02d} min"
