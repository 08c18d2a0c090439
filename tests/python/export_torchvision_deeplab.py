"""Golden parity data for the Rust DeepLabv3 (the export_torchvision_resnet.py pattern).

Builds torchvision's deeplabv3_resnet50 (no pretrained weights, no auxiliary classifier)
with a fixed seed, randomises the BatchNorm running statistics and affine parameters (so
that eval mode is not an identity), and writes:
  <out>/deeplabv3_resnet50.safetensors     the state dict, torchvision names,
                                           num_batches_tracked included
  <out>/deeplabv3_resnet50_io.safetensors  `input` [1, 3, 65, 65] (odd, so that both
                                           bilinear upsamplings are non-trivial) and its
                                           eval-mode `logits` [1, 21, 65, 65] (`out`)
Usage: python export_torchvision_deeplab.py OUT_DIR
"""
import sys

import torch
import torchvision
from safetensors.torch import save_file


def main(out: str) -> None:
    torch.manual_seed(0)
    model = torchvision.models.segmentation.deeplabv3_resnet50(
        weights=None, weights_backbone=None, num_classes=21, aux_loss=None
    )
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.0)
                m.bias.uniform_(-0.1, 0.1)
    model.eval()
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        logits = model(x)["out"]
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, f"{out}/deeplabv3_resnet50.safetensors")
    save_file({"input": x, "logits": logits.contiguous()}, f"{out}/deeplabv3_resnet50_io.safetensors")


if __name__ == "__main__":
    main(sys.argv[1])
