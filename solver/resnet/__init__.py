"""The learned flow as an explicit ResNet (numpy reference, ONNX via the one graph builder, npz),
and the export of a run (numpy and ONNX only, no dolfinx)."""
