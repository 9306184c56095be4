"""The velocity model a config describes (numpy only: training, comparison and export share it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from solver.errors import InputError
from solver.model.velocity import VelocityModel

if TYPE_CHECKING:
    from solver.config import Config
    from solver.model.domain import Domain


def velocity_model(config: Config, domain: Domain) -> VelocityModel:
    """The learned field v(t, x; θ) of eq. 2 on ``domain``, as ``config.field`` describes it.

    Raises:
        InputError: if ``field.kind`` is not "mlp" (only the MLP field has parameters to learn).
    """
    fc = config.field
    if fc.kind != "mlp":
        raise InputError(f'training learns an "mlp" field (eq. 2), got field.kind = "{fc.kind}"', config.source)
    return VelocityModel(dim=domain.dim, width=fc.width, slabs=fc.slabs, T=fc.T,
                         activation=fc.activation, domain=domain)
