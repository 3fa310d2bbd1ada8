"""Query-free shadow-model inversion (He, Zhang, Lee, ACSAC 2019: the "query-free" attack).

The attacker is the server: it has the trained head f2 and labelled images from the same
distribution, but may not query the client and does not have its weights; it knows the
client's architecture and cut (public). It

1. builds a fresh encoder f1' of that architecture and trains it, with f2 frozen, so that
   f2(f1'(x)) classifies its auxiliary images (cross-entropy): the frozen head forces f1' to
   produce activations that "look like" the real client's,
2. inverts the real activations it observes through the shadow with the white-box rMLE attack
   (He et al.'s recipe: the shadow stands in for the client's weights; `inversion = "rmle"`,
   the default), or -- `inversion = "decoder"`, splitleak's earlier variant -- trains an inverse
   network on pairs (f1'(x_aux), x_aux) with the decoder attack's loop and decodes with it.

Measured on Fashion-MNIST small-cnn cut 2 (docs/attacks.md, "shadow and unsplit at deeper
cuts"): rMLE on the shadow SSIM 0.38, the decoder on the shadow 0.05: the learned inverse
does not transfer from the shadow's features to the client's, the input search does better.

The shadow is trained without the defense's activation transform (the attacker only has the
head); noise the head was trained with is therefore not simulated.

Randomness: the shadow's weights and batch order come from the "init" and "order" streams of
`access.seed`; its inverse network is a decoder attack fitted with a seed derived from
`access.seed` ("attack/shadow/decoder"), so it does not share the plain decoder attack's streams.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from splitleak._random import derive_seed
from splitleak.attacks._optim import attack_generator, fresh_client, frozen
from splitleak.attacks.base import ATTACKS, Access, AttackConfig, ThreatModel, WorkSize
from splitleak.attacks.decoder import DecoderAttack, DecoderConfig
from splitleak.attacks.rmle import RMLEAttack, RMLEConfig
from splitleak.errors import InputError
from splitleak.models.split import SplitModel
from splitleak.progress import ProgressFactory, silent


INVERSIONS = ("rmle", "decoder")  # how the observed activations are inverted through the shadow


@dataclass(frozen=True)
class ShadowConfig(AttackConfig):
    """Budget and hyper-parameters of the shadow attack (shadow encoder, then its decoder)."""

    what: ClassVar[str] = "shadow"
    budget_fields: ClassVar[tuple[str, ...]] = ("shadow_epochs", "decoder_epochs", "rmle_steps")

    shadow_epochs: int = 3
    batch_size: int = 128
    lr: float = 1e-3
    inversion: str = "rmle"  # "rmle" (He et al.: white-box rMLE on the shadow) or "decoder"
    rmle_steps: int = 200  # the rmle attack's defaults
    rmle_lr: float = 0.1
    rmle_tv_weight: float = 0.01
    decoder_epochs: int = 10  # inversion = "decoder" only
    decoder_width: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.inversion not in INVERSIONS:
            raise InputError(f"shadow inversion must be one of {list(INVERSIONS)}, got {self.inversion!r}")



IMAGES_PER_SECOND = 1000.0  # shadow encoder and decoder fits, image-epochs per second, one core, small-cnn


@ATTACKS.register
class ShadowAttack:
    """He et al.'s query-free attack: train a shadow client under the frozen head, invert it."""

    name: ClassVar[str] = "shadow"
    label: ClassVar[str] = "Shadow"
    reference: ClassVar[str] = "He, Zhang, Lee 2019 (query-free)"
    config_class: ClassVar[type[ShadowConfig]] = ShadowConfig
    threat_model: ClassVar[ThreatModel] = ThreatModel(
        summary="query-free: has the server head, labelled auxiliary data and the client's architecture",
        server_head=True,
        aux_data=True,
        min_aux=16,
        aux_labels=True,
        architecture=True,
    )

    @classmethod
    def estimate_seconds(cls, config: ShadowConfig, size: WorkSize) -> float:
        """Rough seconds of one core for fit + reconstruct (sweep --dry-run)."""
        shadow = config.shadow_epochs * size.aux / IMAGES_PER_SECOND
        if config.inversion == "rmle":
            return shadow + RMLEAttack.estimate_seconds(RMLEConfig(steps=config.rmle_steps), size)
        return shadow + config.decoder_epochs * size.aux / IMAGES_PER_SECOND

    def __init__(self, config: ShadowConfig | None = None, *, progress: ProgressFactory = silent) -> None:
        self.config = config or ShadowConfig()
        self.progress = progress
        self.shadow: SplitModel | None = None
        self.inverse: DecoderAttack | RMLEAttack | None = None
        self.history: list[float] = []
        self.aux_accuracy: float | None = None

    def fit(self, access: Access) -> "ShadowAttack":
        self.threat_model.check(self.name, access)
        assert access.head is not None and access.aux is not None
        cfg, device = self.config, access.device
        self.shadow, self.inverse, self.history, self.aux_accuracy = None, None, [], None
        order = attack_generator(access.seed, self.name, "order")
        shadow = fresh_client(access, self.name, self.threat_model.summary, attack_generator(access.seed, self.name, "init"))
        head = frozen(access.head).to(device)
        optimiser = torch.optim.Adam(shadow.encoder.parameters(), lr=cfg.lr)
        x_aux, y_aux = access.aux.x, access.aux.y
        n = len(x_aux)
        history: list[float] = []
        shadow.train()
        with self.progress(total=cfg.shadow_epochs * n, desc="shadow attack: fit shadow") as bar:
            for _ in range(cfg.shadow_epochs):
                perm = torch.randperm(n, generator=order)
                total = 0.0
                for i in range(0, n, cfg.batch_size):
                    idx = perm[i : i + cfg.batch_size]
                    x, y = x_aux[idx].to(device), y_aux[idx].to(device)
                    loss = F.cross_entropy(head(shadow.client(x)), y)
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                    optimiser.step()
                    total += loss.item() * len(idx)
                    bar.update(len(idx))
                history.append(total / n)
                bar.set_postfix(ce=f"{history[-1]:.3f}")
        shadow.eval()
        for p in shadow.parameters():
            p.requires_grad_(False)
        with torch.no_grad():
            logits = torch.cat([head(shadow.client(x_aux[i : i + 1024].to(device))).cpu() for i in range(0, n, 1024)])
        aux_accuracy = (logits.argmax(1) == y_aux).float().mean().item()
        inverse: DecoderAttack | RMLEAttack
        if cfg.inversion == "rmle":  # the shadow's weights stand in for the client's
            rmle_config = RMLEConfig(steps=cfg.rmle_steps, lr=cfg.rmle_lr, tv_weight=cfg.rmle_tv_weight)
            inverse = RMLEAttack(rmle_config, progress=self.progress).fit(dataclasses.replace(access, query=None, encoder=shadow))
        else:
            decoder_config = DecoderConfig(epochs=cfg.decoder_epochs, batch_size=cfg.batch_size, lr=cfg.lr, width=cfg.decoder_width)
            stand_in = dataclasses.replace(access, query=shadow.client, encoder=None, seed=derive_seed(access.seed, "attack", self.name, "decoder"))
            inverse = DecoderAttack(decoder_config, progress=self.progress).fit(stand_in)
        self.shadow, self.inverse, self.history, self.aux_accuracy = shadow, inverse, history, aux_accuracy
        return self

    def reconstruct(self, z: Tensor) -> Tensor:
        if self.inverse is None:
            raise RuntimeError("call fit() before reconstruct()")
        return self.inverse.reconstruct(z)

    def budget(self) -> dict[str, Any]:
        inverse = self.inverse.budget() if self.inverse is not None else {}
        return {
            **dataclasses.asdict(self.config),
            "final_shadow_ce": self.history[-1] if self.history else None,
            "shadow_aux_accuracy": self.aux_accuracy,
            **{k: inverse[k] for k in ("final_train_mse", "objective_start", "objective_end") if k in inverse},
        }
