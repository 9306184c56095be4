"""The finite-element side (dolfinx, PETSc): meshes, the DG transport solve, point evaluation,
and the exact discrete adjoint with its per-slab velocity derivative."""
