"""The project's command-line tools beside the package: benchmarks, experiments, the peer.

A package, so that its entry points import their libraries by name, never through
``sys.path``: run them from the repository root as modules, e.g.
``.venv/bin/python -m scripts.benchmarks --quick --out /tmp/bench``.

- ``harness``: what every tool shares (paths, subprocesses with one thread each, peak memory,
  mpirun, the peer venv, problem files with some keys changed);
- ``bench_lib``: the sections of ``scripts.benchmarks`` and ``scripts.bench_schemes``;
- ``experiments_lib``: the sections of ``scripts.experiments``;
- ``peak``: the small launcher that measures a command's peak memory (standard library only);
- ``peer/``: the torch peer's scripts, run in their own venv (``peer/setup.sh``).

The other ``bench_*.py`` import only ``solver`` and run as files too.
"""
