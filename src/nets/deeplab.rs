//! DeepLabv3 (dilated ResNet + ASPP) with torchvision names.
