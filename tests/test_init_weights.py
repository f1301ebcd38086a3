"""`--init FILE`: the backbone starts from a torchvision-format state dict, every width from its leading slices.

torchvision cannot be installed here: the files are built by hand-written generators of torchvision's key names
and shapes (``resnet18`` / ``resnet50`` / ``mobilenet_v2``, written from torchvision's model definitions, not
from swedge's own key map), filled with random values.
"""

import hashlib
import json

import pytest
import torch

from swedge.errors import SwedgeError
from swedge.nn.model import ModelConfig, build_model
from swedge.nn.pretrained import check_init, load_init
from swedge.nn.slimmable import width_channels

WIDTHS = (0.25, 0.5, 1.0)


def _bn(prefix: str, c: int) -> dict:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def tv_resnet_shapes(arch: str) -> dict:
    """torchvision.models.resnet18 / resnet50 state-dict keys and shapes (torchvision/models/resnet.py)."""
    bottleneck = arch == "resnet50"
    depths = (3, 4, 6, 3) if bottleneck else (2, 2, 2, 2)
    shapes = {"conv1.weight": (64, 3, 7, 7), **_bn("bn1", 64)}
    cin = 64
    for i, (planes, depth) in enumerate(zip((64, 128, 256, 512), depths), 1):
        for j in range(depth):
            p = f"layer{i}.{j}"
            if bottleneck:
                cout = planes * 4
                convs = [(planes, cin, 1, 1), (planes, planes, 3, 3), (cout, planes, 1, 1)]
            else:
                cout = planes
                convs = [(planes, cin, 3, 3), (planes, planes, 3, 3)]
            for k, shape in enumerate(convs, 1):
                shapes[f"{p}.conv{k}.weight"] = shape
                shapes.update(_bn(f"{p}.bn{k}", shape[0]))
            stride = 1 if i == 1 or j > 0 else 2  # torchvision: stride 2 at the start of layers 2-4
            if stride != 1 or cin != cout:
                shapes[f"{p}.downsample.0.weight"] = (cout, cin, 1, 1)
                shapes.update(_bn(f"{p}.downsample.1", cout))
            cin = cout
    shapes.update({"fc.weight": (1000, cin), "fc.bias": (1000,)})
    return shapes


def tv_mobilenet_v2_shapes() -> dict:
    """torchvision.models.mobilenet_v2 state-dict keys and shapes (torchvision/models/mobilenetv2.py)."""
    shapes = {"features.0.0.weight": (32, 3, 3, 3), **_bn("features.0.1", 32)}
    cin, i = 32, 1
    for t, c, n, _s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                        (6, 320, 1, 1)):
        for _ in range(n):
            hidden, k, p = cin * t, 0, f"features.{i}.conv"
            if t != 1:
                shapes[f"{p}.0.0.weight"] = (hidden, cin, 1, 1)
                shapes.update(_bn(f"{p}.0.1", hidden))
                k = 1
            shapes[f"{p}.{k}.0.weight"] = (hidden, 1, 3, 3)
            shapes.update(_bn(f"{p}.{k}.1", hidden))
            shapes[f"{p}.{k + 1}.weight"] = (c, hidden, 1, 1)
            shapes.update(_bn(f"{p}.{k + 2}", c))
            cin, i = c, i + 1
    shapes["features.18.0.weight"] = (1280, 320, 1, 1)
    shapes.update(_bn("features.18.1", 1280))
    shapes.update({"classifier.1.weight": (1000, 1280), "classifier.1.bias": (1000,)})
    return shapes


def tv_state(arch: str, seed: int = 1) -> dict:
    shapes = tv_mobilenet_v2_shapes() if arch == "mobilenetv2" else tv_resnet_shapes(arch)
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g)
    return state


def _save(state, path):
    torch.save(state, path)
    return path


def _model(arch="resnet18", widths=WIDTHS):
    torch.manual_seed(0)
    return build_model(ModelConfig(arch=arch, widths=widths, embedding_dim=16, num_classes=4))


def _resnet_pairs(backbone):
    """(torchvision prefix, conv, switchable BN) picked by hand from swedge's ResNet: stem, a body conv, a
    downsample."""
    stem, l3b1, l2b0 = backbone.stem[0], backbone.layers[2][1].body[2], backbone.layers[1][0].shortcut
    return [("conv1", "bn1", stem), ("layer3.1.conv2", "layer3.1.bn2", l3b1),
            ("layer2.0.downsample.0", "layer2.0.downsample.1", l2b0)]


def _check_slices(model, state, pairs):
    for width in model.widths:
        model.set_width(width)
        for conv_key, bn_key, (conv, sbn, *_act) in pairs:
            src = state[f"{conv_key}.weight"]
            plain = conv.to_plain().weight
            cout = width_channels(src.shape[0], width)
            cin = src.shape[1] if conv_key in ("conv1", "features.0.0") or conv.depthwise else \
                width_channels(src.shape[1], width)
            assert torch.equal(plain, src[:cout, :cin]), (conv_key, width)
            if width == 1.0:
                assert torch.equal(conv.weight, src), conv_key
            bn = sbn.bn[sbn.width_index]
            assert bn.num_features == cout
            for name in ("weight", "bias", "running_mean", "running_var"):
                assert torch.equal(getattr(bn, name), state[f"{bn_key}.{name}"][:cout]), (bn_key, name, width)


def test_resnet18_every_width_takes_leading_slices(tmp_path):
    state = tv_state("resnet18")
    model = _model()
    before = model.backbone.stem[0][0].weight.detach().clone()
    info = load_init(model, _save(state, tmp_path / "r18.pth"))
    assert not torch.equal(before, state["conv1.weight"])  # the fresh init differed: the load did something
    _check_slices(model, state, _resnet_pairs(model.backbone))
    assert info.name == "r18.pth"
    assert info.sha256 == hashlib.sha256((tmp_path / "r18.pth").read_bytes()).hexdigest()


def test_resnet50_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    state = tv_state("resnet50")
    path = tmp_path / "r50.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    model = _model("resnet50", (0.5, 1.0))
    load_init(model, path)
    b = model.backbone
    _check_slices(model, state, _resnet_pairs(b) + [("layer4.0.conv3", "layer4.0.bn3", b.layers[3][0].body[4]),
                                                      ("layer1.0.downsample.0", "layer1.0.downsample.1",
                                                       b.layers[0][0].shortcut)])


def test_mobilenetv2_torchvision_keys(tmp_path):
    state = tv_state("mobilenetv2")
    model = _model("mobilenetv2", (0.5, 1.0))
    load_init(model, _save(state, tmp_path / "mb.pt"))
    f = model.backbone.features
    pairs = [("features.0.0", "features.0.1", f[0]),
             ("features.1.conv.1", "features.1.conv.2", f[1].conv[1]),  # t=1: the projection and its BN
             ("features.5.conv.1.0", "features.5.conv.1.1", f[5].conv[1]),  # a depthwise conv
             ("features.5.conv.2", "features.5.conv.3", f[5].conv[2]),
             ("features.18.0", "features.18.1", f[18])]
    _check_slices(model, state, pairs)


def test_per_width_members_all_start_from_the_file(tmp_path):
    state = tv_state("resnet18")
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="resnet18", widths=(0.5, 1.0), embedding_dim=8, num_classes=4,
                                    extra={"members": "per-width"}))
    load_init(model, _save(state, tmp_path / "r18.pth"))
    for member in model.members:
        assert torch.equal(member.backbone.stem[0][0].weight, state["conv1.weight"])


def test_shape_mismatch_names_the_key_and_both_shapes(tmp_path):
    state = tv_state("resnet18")
    state["layer2.1.conv1.weight"] = torch.zeros(128, 128, 1, 1)
    with pytest.raises(SwedgeError) as err:
        check_init("resnet18", WIDTHS, _save(state, tmp_path / "bad.pth"))
    msg = str(err.value)
    assert "layer2.1.conv1.weight has shape (128, 128, 1, 1), resnet18 expects (128, 128, 3, 3)" in msg
    assert "\n" not in msg


def test_resnet50_file_to_resnet18_names_the_first_mismatch(tmp_path):
    path = _save(tv_state("resnet50"), tmp_path / "r50.pth")
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(SwedgeError, match=r"layer1\.0\.conv1\.weight has shape \(64, 64, 1, 1\), resnet18 expects "
                                          r"\(64, 64, 3, 3\)"):
        load_init(model, path)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # nothing half-copied


def test_missing_and_foreign_keys(tmp_path):
    state = tv_state("resnet18")
    del state["layer3.0.bn1.running_var"]
    with pytest.raises(SwedgeError, match=r"lacks layer3\.0\.bn1\.running_var \(expected shape \(256,\)\)"):
        check_init("resnet18", WIDTHS, _save(state, tmp_path / "missing.pth"))
    state = tv_state("resnet18")
    state["layer5.0.conv1.weight"] = torch.zeros(1)
    with pytest.raises(SwedgeError, match=r"holds layer5\.0\.conv1\.weight, which resnet18 has no place for"):
        check_init("resnet18", WIDTHS, _save(state, tmp_path / "extra.pth"))


def test_a_wrapped_ddp_state_dict_is_accepted(tmp_path):
    state = tv_state("resnet18")
    path = _save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "ddp.pth")
    model = _model()
    load_init(model, path)
    assert torch.equal(model.backbone.stem[0][0].weight, state["conv1.weight"])


def test_a_pickled_object_is_refused_by_weights_only(tmp_path):
    path = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 2), path)  # a whole module: weights_only=True does not unpickle it
    with pytest.raises(SwedgeError) as err:
        check_init("resnet18", WIDTHS, path)
    msg = str(err.value)
    assert "weights_only=True) refused it: the file pickles a torch.nn.modules.linear.Linear" in msg
    assert "torch.save(model.state_dict(), FILE)" in msg
    assert "\n" not in msg


@pytest.mark.parametrize("content, says", [
    ([1, 2, 3], "holds a list, not a state dict"),
    ({"a": 1}, "not a state dict"),
    ({}, "not a state dict"),
    (b"garbage", "not a file torch.load can read"),
])
def test_not_a_state_dict(tmp_path, content, says):
    path = tmp_path / "x.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(SwedgeError, match=says):
        check_init("resnet18", WIDTHS, path)


def test_missing_file_and_bad_safetensors(tmp_path):
    with pytest.raises(SwedgeError, match="no such file"):
        check_init("resnet18", WIDTHS, tmp_path / "nope.pth")
    with pytest.raises(SwedgeError, match="not a file"):
        check_init("resnet18", WIDTHS, tmp_path)
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(SwedgeError, match="not a readable safetensors file"):
        check_init("resnet18", WIDTHS, tmp_path / "bad.safetensors")


def _train_args(data, out, *more):
    return ["train", "--data", str(data), "--out", str(out), "--widths", "0.5,1.0", "--embedding-dim", "8",
            "--epochs", "1", "--max-steps", "1", "--ids-per-batch", "2", "--images-per-id", "2", "--workers", "0",
            "--quiet", *more]


def test_init_and_imagenet_are_mutually_exclusive(tmp_path, capsys):
    from swedge.cli import main

    path = _save(tv_state("resnet18"), tmp_path / "r18.pth")
    out = tmp_path / "run"
    assert main(_train_args(tmp_path / "data", out, "--init", str(path), "--imagenet")) == 2
    err = capsys.readouterr().err.strip()
    assert "--init FILE and --imagenet both choose" in err and "\n" not in err
    assert not out.exists()


def test_imagenet_without_a_source_points_to_init(tmp_path, capsys):
    from swedge.cli import main

    assert main(_train_args(tmp_path / "data", tmp_path / "run", "--imagenet")) == 2
    assert "--imagenet: no shipped ImageNet weights for --arch resnet18" in capsys.readouterr().err


def test_a_bad_file_stops_before_anything_is_written(tmp_path, tiny_market, capsys):
    from swedge.cli import main

    path = _save(tv_state("resnet50"), tmp_path / "r50.pth")
    out = tmp_path / "runs" / "run"
    assert main(_train_args(tiny_market, out, "--init", str(path))) == 2
    err = capsys.readouterr().err.strip()
    assert "layer1.0.conv1.weight has shape (64, 64, 1, 1), resnet18 expects (64, 64, 3, 3)" in err
    assert "\n" not in err
    assert not (tmp_path / "runs").exists()


def test_train_records_the_files_sha256(tmp_path, tiny_market):
    from swedge.checkpoint import load_checkpoint
    from swedge.cli import main

    state = tv_state("resnet18")
    path = _save(state, tmp_path / "mine.pth")
    out = tmp_path / "run"
    # lr 1e-9: one Adam step moves each weight by ~1e-9, so the trained convs still hold the file's values
    assert main(_train_args(tiny_market, out, "--init", str(path), "--lr", "1e-9")) == 0
    ckpt = load_checkpoint(out / "model.safetensors")  # the header, init fields included, passes validation
    training = ckpt.meta["training"]
    assert training["init"] == str(path) and training["init_name"] == "mine.pth"
    assert training["init_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    got = ckpt.model.backbone.layers[2][1].body[2][0].weight
    assert torch.allclose(got, state["layer3.1.conv2.weight"], atol=1e-6)


def test_checkpoint_header_checks_the_init_fields(tmp_path):
    from swedge.checkpoint_meta import check_fields
    from swedge.errors import CheckpointError

    meta = {"model": {"arch": "resnet18", "widths": [0.5, 1.0], "embedding_dim": 8, "num_classes": 2},
            "preprocess": {"size": [64, 32]}, "tensors_sha256": "0" * 64}
    good = {"init": "a.pth", "init_name": "a.pth", "init_sha256": "ab" * 32}
    check_fields(tmp_path / "m", {**meta, "training": good})
    for bad, field in (({**good, "init_sha256": "xyz"}, "training.init_sha256"),
                       ({**good, "init_name": 3}, "training.init_name"),
                       ({"init_sha256": "ab" * 32}, "training.init_sha256")):
        with pytest.raises(CheckpointError, match=field.replace(".", r"\.")):
            check_fields(tmp_path / "m", {**meta, "training": bad})


def test_compare_fingerprint_holds_the_files_sha256_not_its_path(tmp_path):
    from swedge.study.compare import MethodSpec, fingerprint

    a = _save(tv_state("resnet18", seed=1), tmp_path / "a.pth")
    b = _save(tv_state("resnet18", seed=2), tmp_path / "b.pth")
    spec = MethodSpec("sfsc", "sfsc")
    fa = fingerprint(spec, 0, {"init": str(a), "epochs": 1})
    assert fa["init_sha256"] == hashlib.sha256(a.read_bytes()).hexdigest() and "init" not in fa
    assert fingerprint(spec, 0, {"init": str(b), "epochs": 1}) != fa
    moved = tmp_path / "moved.pth"
    moved.write_bytes(a.read_bytes())
    assert fingerprint(spec, 0, {"init": str(moved), "epochs": 1}) == fa
    assert fingerprint(spec, 0, {"init": "", "epochs": 1})["init_sha256"] == ""
    json.dumps(fa)


def test_compare_checks_init_before_training(tmp_path, capsys):
    from swedge.cli import main

    path = _save(tv_state("resnet50"), tmp_path / "r50.pth")
    out = tmp_path / "cmp"
    base = ["compare", "--methods", "sfsc", "--data", str(tmp_path / "none"), "--out", str(out)]
    assert main(base + ["--init", str(path)]) == 2
    assert "layer1.0.conv1.weight has shape (64, 64, 1, 1), resnet18 expects" in capsys.readouterr().err
    assert main(base + ["--init", str(path), "--arch", "mobilenetv2", "--imagenet"]) == 2
    assert "--init FILE and --imagenet both choose" in capsys.readouterr().err
    assert not out.exists()
