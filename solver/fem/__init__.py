"""The finite-element side (dolfinx, PETSc): meshes, the DG transport solve, point evaluation,
and the exact discrete adjoint with its per-slab velocity derivative."""

from solver._lazy import exports

# The names code outside this package uses, each imported from its module on first use.
__all__, __getattr__, __dir__ = exports(__name__, {
    "Adjoint": "adjoint",
    "create_mesh": "mesh", "min_cell_size": "mesh",
    "PointEvaluator": "pointeval", "evaluate_everywhere": "pointeval",
    "grid_evaluator": "pointeval",
    "mesh_with_marks": "refine",
    "ForwardResult": "transport", "TransportSolver": "transport",
})
