"""The parts of ``scripts/benchmarks.py``: one module per section of the report.

``common`` holds what every section needs (paths, subprocesses, progress lines, configs
written into the report directory, medians); ``learning``, ``scaling``, ``prediction``,
``parallel`` and ``memory`` measure sections 1–5; ``peer`` runs the neural-ODE peer;
``machine`` describes the machine and the versions; ``report`` writes report.md and the plots.
``prediction`` and ``memory`` also hold the workers their sections start as subprocesses
(``python -m bench_lib.prediction`` and ``python -m bench_lib.memory``).
"""
