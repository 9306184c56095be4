"""The model, numpy only (never imports dolfinx): the domain and its cutoff, the velocity field
of eq. 2, terminal functions, data sets and their scaling into Ω, losses, and the model's own
prediction, the flow of its characteristics."""

from solver._lazy import exports

# The names code outside this package uses, each imported from its module on first use.
__all__, __getattr__, __dir__ = exports(__name__, {
    "flow": "characteristics",
    "Dataset": "data", "Scaling": "data", "augment": "data", "describe": "data",
    "make_dataset": "data", "place_in_domain": "data", "write_csv": "data",
    "Ball": "domain", "Box": "domain", "make_domain": "domain",
    "velocity_model": "from_config",
    "cross_entropy": "losses", "squared_error": "losses",
    "Terminal": "terminal", "make_terminal": "terminal", "terminal_defaults": "terminal",
    "Field": "velocity", "RigidRotation": "velocity", "VelocityModel": "velocity",
    "activation": "velocity",
})
