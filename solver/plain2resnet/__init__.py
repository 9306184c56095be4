"""Sections 3-4 of the paper: a plain net, its flow model, and that flow re-discretized as a
ResNet (written with resnet/'s ONNX builder and npz format)."""
