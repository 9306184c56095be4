"""The run directory: its files (store: theta, checkpoint, history, metrics, config; atomic
writes), the fields for ParaView, and the pictures."""

from solver._lazy import exports

# The names code outside this package uses, each imported from its module on first use.
__all__, __getattr__, __dir__ = exports(__name__, {
    "atomic_file": "files", "prepare_run_directory": "files", "refuse_run_directory": "files",
    "remove_temporaries": "files", "write_json_atomic": "files", "write_text_atomic": "files",
    "plane_grid": "outputs", "solve_with_states": "outputs", "training_metrics": "outputs",
    "write_animation": "outputs", "write_comparison_outputs": "outputs",
    "write_training_outputs": "outputs",
    "convergence_figure": "plots",
    "write_map": "predictions", "write_predictions": "predictions",
    "read_parameters": "store",
})
