"""Checks of the PDE against the characteristics: for a configured field (with refinement
studies) and for a trained run."""

from solver._lazy import exports

# The names code outside this package uses, each imported from its module on first use.
__all__, __getattr__, __dir__ = exports(__name__, {
    "build_field": "compare_field", "format_table": "compare_field",
    "monte_carlo_agreement": "compare_field", "off_facets": "compare_field",
    "refinement_study": "compare_field", "sample_points": "compare_field",
    "solve_and_compare": "compare_field",
    "load_parameters": "compare_run",
    "Run": "predict", "read_run": "predict",
})
