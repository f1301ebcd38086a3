import os

import pytest

# Keep CPU tests predictable on a 2-core machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def torch_threads():
    import torch

    torch.set_num_threads(2)
    return torch


@pytest.fixture(scope="session")
def tiny_market(tmp_path_factory):
    """A small Market-1501-layout set at 64x32 (train / query / gallery, disjoint ids)."""
    from swedge.data.synth import generate

    out = tmp_path_factory.mktemp("market") / "synth"
    generate(out, train_ids=8, test_ids=6, cameras=3, images_per_camera=2, size=(64, 32), seed=5, distractors=2,
             junk=1, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A ResNet-18 switchable checkpoint (4 widths, D=32, 64x32 input) with non-trivial BN statistics.

    Random weights, non-zero BN scales (the zero-init of each residual block's last BN would silence whole
    convolutions), then a few train-mode forward passes at every width so each switchable BN holds real
    running statistics: exporters must reproduce them, not the identity."""
    import torch

    from swedge.checkpoint import save_checkpoint
    from swedge.data.preprocess import Preprocess
    from swedge.nn.model import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="resnet18", widths=(0.25, 0.5, 0.75, 1.0), embedding_dim=32,
                                    num_classes=8))
    model.train()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.weight is not None:
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
        for w in model.widths:
            with model.at_width(w):
                for _ in range(3):
                    model(torch.randn(8, 3, 64, 32) * 1.5 + 0.2)
    model.eval()
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    save_checkpoint(path, model, preprocess=Preprocess(size=(64, 32)).to_dict(), method={"name": "sfsc-sum"})
    return path


@pytest.fixture(scope="session")
def onnx_bundle(tiny_checkpoint, tiny_market, tmp_path_factory):
    """A small exported bundle: ONNX fp32 at widths 0.5 and 1.0, probe = the tiny_market test split."""
    from swedge.exporters.bundle import ExportPlan, export_bundle

    out = tmp_path_factory.mktemp("bundle") / "bundle"
    export_bundle(ExportPlan(checkpoint=tiny_checkpoint, out=out, formats=["onnx"], widths=[0.5, 1.0],
                             precisions=["fp32"], probe=tiny_market), progress=False)
    return out
