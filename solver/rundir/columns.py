"""The columns of a run's history.csv, now and in earlier versions (``store`` writes and reads
them; ``files`` recognizes a run made before the ``.solver-run`` marker by its header)."""

HISTORY_COLUMNS = ("iteration", "loss", "data_loss", "train_accuracy", "test_accuracy",
                   "gradient_norm", "steps", "seconds", "evaluations",
                   # the resolution of the row and the certification check (NaN between checks)
                   "cells", "degree", "max_logit_difference", "label_agreement",
                   "accuracy_characteristics", "check_seconds",
                   "refinements",  # local refinements of the mesh (fem/refine.py)
                   # ε > 0: the Monte Carlo reference's largest error bound (learn/certify.py)
                   "monte_carlo_bound")
INTEGER_COLUMNS = ("iteration", "steps", "evaluations")
# Runs written before certified training have the first nine columns, before local refinement
# the first fifteen, before the Monte Carlo check of viscous runs sixteen; the rest read as NaN.
FIRST_HISTORY_COLUMNS = HISTORY_COLUMNS[:9]
EARLIER_HISTORY_COLUMNS = (FIRST_HISTORY_COLUMNS, HISTORY_COLUMNS[:15], HISTORY_COLUMNS[:16])
