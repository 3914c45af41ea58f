"""The engines that run a bundle (TensorRT, TVM CUDA, TVM CPU), the facts they need and the choice among them."""
