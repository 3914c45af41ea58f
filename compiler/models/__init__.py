"""Projects and model versions: the ONNX files we accept, what we record of them, the bundled reference model."""
