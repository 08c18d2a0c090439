"""Golden parity data for the Rust ResNets (the candle batch_norm test pattern).

Builds a torchvision ResNet with a fixed seed and random weights, randomises the BatchNorm
running statistics and affine parameters (so that eval mode is not an identity), and writes:
  <out>/<arch>.safetensors        the state dict, torchvision names, num_batches_tracked included
  <out>/<arch>_io.safetensors     `input` [2, 3, 64, 64] and its eval-mode `logits` [2, classes]
Usage: python export_torchvision_resnet.py resnet18 OUT_DIR
"""
import sys

import torch
import torchvision
from safetensors.torch import save_file


def main(arch: str, out: str) -> None:
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None, num_classes=10)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.0)
                m.bias.uniform_(-0.1, 0.1)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = model(x)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, f"{out}/{arch}.safetensors")
    save_file({"input": x, "logits": logits}, f"{out}/{arch}_io.safetensors")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
