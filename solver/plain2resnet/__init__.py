"""Sections 3-4 of the paper: a plain net, its flow model, and that flow re-discretized as a
ResNet (written with resnet/'s ONNX builder and npz format)."""

from solver._lazy import exports

# The names code outside this package uses, each imported from its module on first use.
__all__, __getattr__, __dir__ = exports(__name__, {
    "add_parser": "cli",
    "convergence_study": "flow", "discretize": "flow", "study_order": "flow", "flow_map": "flow",
    "flow_model": "flow", "plain_to_resnet": "flow",
    "Layer": "plainnet", "PlainNet": "plainnet", "random_plain_net": "plainnet",
    "from_sklearn": "plainnet_io",
    "save_onnx": "resnet_export", "to_onnx": "resnet_export",
})
