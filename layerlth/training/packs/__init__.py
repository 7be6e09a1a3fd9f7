"""Packs: several runs trained by one process on one device (`pack`), and fused packs, where runs of
one CIFAR ResNet architecture and recipe train as one step (`fusion` decides who, `fused_group`
steps them, `fused_net` is their stacked network)."""
