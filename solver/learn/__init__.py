"""Learning: the reduced functional J(p) and its gradient, Taylor tests, the optimizers, the
training loop, and the certification of what training reports against the characteristics."""

from solver._lazy import exports

# The names code outside this package uses, each imported from its module on first use.
__all__, __getattr__, __dir__ = exports(__name__, {
    "Resolution": "certify",
    "ReducedFunctional": "reduced",
    "Problem": "train", "describe_check": "train", "load_checkpoint": "train",
    "load_dataset": "train",
})
