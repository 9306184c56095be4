"""The sections of ``scripts.experiments`` (the paper's section 5 as experiments, issue #13)."""
