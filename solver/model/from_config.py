"""The velocity model a config describes (numpy only: training, comparison and export share it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from solver.errors import InputError
from solver.model.velocity import LEARNED_KINDS, VelocityModel

if TYPE_CHECKING:
    from solver.config import Config
    from solver.model.domain import Domain


def velocity_model(config: Config, domain: Domain) -> VelocityModel:
    """The learned field v(t, x; θ) on ``domain``, as ``config.field`` describes it: eq. 2
    ("mlp") or its one-layer form v = χ a(W x + b) ("mlp1", width d).

    Raises:
        InputError: if ``field.kind`` is not "mlp" or "mlp1" (only those have parameters to learn).
    """
    fc = config.field
    if fc.kind not in LEARNED_KINDS:
        raise InputError(f'training learns an "mlp" or "mlp1" field (eq. 2), got field.kind = "{fc.kind}"',
                         config.source)
    layers = LEARNED_KINDS[fc.kind]
    return VelocityModel(dim=domain.dim, width=fc.width if layers == 2 else domain.dim,
                         slabs=fc.slabs, T=fc.T, activation=fc.activation, domain=domain,
                         layers=layers)
