"""Checks of the PDE against the characteristics: for a configured field (with refinement
studies) and for a trained run."""
