"""The sections of ``scripts/experiments.py`` (the paper's section 5 as experiments, issue #13)."""
