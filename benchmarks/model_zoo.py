"""The benchmark zoo: CNNs of the shapes users package, built by code with seeded weights (no downloads) and
exported to ONNX with a classification head (softmax over 10 classes), as the create-model command accepts them.

torchvision's ResNet, MobileNet and EfficientNet definitions are instantiated with random weights (torch's seed
fixed); the U-Net-like model is defined here. Needs the test extra (torch, torchvision).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SEED = 0
CLASSES = 10


@dataclass(frozen=True)
class ZooModel:
    """One zoo entry: its name, the square input size it is exported at, and how to build the torch module."""

    name: str
    size: int
    build: Callable[[], object]


def _torchvision(name: str) -> Callable[[], object]:
    def build() -> object:
        import torchvision

        return getattr(torchvision.models, name)(weights=None, num_classes=CLASSES)

    return build


def _unet() -> object:
    """A U-Net-like segmentation model (two down, two up stages, skip concatenations, bilinear upsampling) whose
    per-pixel map is pooled into class scores."""
    import torch
    from torch import nn

    def block(inputs: int, outputs: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(inputs, outputs, 3, padding=1), nn.BatchNorm2d(outputs), nn.ReLU(),
            nn.Conv2d(outputs, outputs, 3, padding=1), nn.BatchNorm2d(outputs), nn.ReLU(),
        )  # fmt: skip

    class UNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.down1, self.down2, self.bottom = block(3, 32), block(32, 64), block(64, 128)
            self.up2, self.up1 = block(128 + 64, 64), block(64 + 32, 32)
            self.pool = nn.MaxPool2d(2)
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            self.head = nn.Conv2d(32, CLASSES, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            d1 = self.down1(x)
            d2 = self.down2(self.pool(d1))
            b = self.bottom(self.pool(d2))
            u2 = self.up2(torch.cat([self.up(b), d2], dim=1))
            u1 = self.up1(torch.cat([self.up(u2), d1], dim=1))
            return self.head(u1).mean(dim=(2, 3))

    return UNet()


ZOO = (
    ZooModel("ResNet-18", 256, _torchvision("resnet18")),
    ZooModel("ResNet-50", 224, _torchvision("resnet50")),
    ZooModel("MobileNetV2", 224, _torchvision("mobilenet_v2")),
    ZooModel("MobileNetV3-Large", 224, _torchvision("mobilenet_v3_large")),
    ZooModel("EfficientNet-B0", 224, _torchvision("efficientnet_b0")),
    ZooModel("U-Net-like", 256, _unet),
)


def export(model: ZooModel, path: Path) -> Path:
    """Build `model` with seeded weights (batch norms given seeded statistics) and export it to `path` as ONNX
    (opset 17, batch 1, input "input", output "scores": softmax over the classes)."""
    import torch

    torch.manual_seed(SEED)
    module = model.build()
    for layer in module.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):  # trained-looking statistics, not the identity
            layer.running_mean.uniform_(-0.1, 0.1)
            layer.running_var.uniform_(0.5, 1.5)
    classifier = torch.nn.Sequential(module, torch.nn.Softmax(dim=1)).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            classifier, (torch.rand(1, 3, model.size, model.size),), str(path),
            input_names=["input"], output_names=["scores"], opset_version=17, dynamo=False,
        )  # fmt: skip
    return path
