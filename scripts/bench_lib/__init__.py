"""The parts of ``scripts.benchmarks`` (and ``scripts.bench_schemes``): one module per section.

``common`` holds what every section needs (the report directory, progress lines, configs
written into it, medians; its processes and configs go through ``scripts.harness``);
``learning``, ``scaling``, ``prediction``, ``parallel`` and ``memory`` measure sections 1–5
(``learning`` holds the one clock for the time to a target accuracy, ``time_to_target``);
``peer`` runs the neural-ODE peer; ``machine`` describes the machine and the versions;
``report`` writes report.md and the plots. ``prediction`` and ``memory`` also hold the
workers their sections start as subprocesses (``python -m scripts.bench_lib.prediction`` and
``python -m scripts.bench_lib.memory``).
"""
