"""From ONNX to a module for one target: targets, TVM builds, tuning, Winograd, CUDA and TensorRT outputs."""
