"""The learned flow as an explicit ResNet (numpy reference, ONNX via the one graph builder, npz),
and the export of a run (numpy and ONNX only, no dolfinx)."""

from solver._lazy import exports

# The names code outside this package uses, each imported from its module on first use.
__all__, __getattr__, __dir__ = exports(__name__, {
    "learned_net": "export", "net_of_parameters": "export",
    "load_net_npz": "formats", "parse_formats": "formats", "read_npz": "formats",
    "save_net_npz": "formats",
    "OutputLayer": "net", "depth_table": "net", "forward": "net", "output_layer": "net",
    "resnet_from_velocity": "net", "sample_mean": "net",
    "OnnxGraph": "onnx_builder",
    "load_onnx_session": "onnx_net", "save_onnx": "onnx_net",
})
