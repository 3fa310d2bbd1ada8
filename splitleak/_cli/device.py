"""`--device`: a torch device name, or 'auto' resolved to cuda when torch sees one, else cpu."""

from __future__ import annotations

HELP = "torch device, e.g. cpu, cuda, cuda:1, or auto (cuda when torch sees one, else cpu)"


def device_argument(value: str) -> str:
    """`value`, with 'auto' resolved (torch is imported only then); other names are checked where
    the work runs (splitleak._validate.usable_device)."""
    if value != "auto":
        return value
    from splitleak._validate import resolve_device

    return resolve_device(value)
