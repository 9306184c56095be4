"""The gmsh geometry sources (disk.geo, ball.geo), installed as the package data ``solver.meshes``.

pyproject.toml maps the package ``solver.meshes`` to this directory, so these files are the one
copy: ``solver.fem.mesh`` reads them through ``importlib.resources`` from an editable install
(here) and from a wheel (copied into it). This file makes the directory a regular package, which
the editable install's finder needs.
"""
