"""timm backbones as endist models: ``model.name: timm/<name>`` (any ``timm.list_models()`` entry).

* ``create_model("timm/resnet10t", K, in_channels=C, **kw)`` calls ``timm.create_model(name,
  pretrained=False, num_classes=K, in_chans=C, **kw)`` (``drop_rate``, ``img_size``, ... pass through);
  ``num_classes``/``in_chans`` come from the data set and may not be given in ``kw``.
* Never a download: ``pretrained=True`` (and timm's ``checkpoint_path``/``pretrained_cfg_overlay``) are refused;
  local weights come from ``weights=PATH`` (any model name, see :func:`load_weights_into`), read with
  ``torch.load(weights_only=True)``.
* Hydra ("last layer only"): :func:`timm_blocks` splits a timm model into the body
  ``forward_head(forward_features(x), pre_logits=True)`` (the model with its classifier reset to identity) and
  the head = its classifier (``get_classifier()``), so ``head(body(x)) == model(x)``.
* BatchEnsemble / LatentBE: :func:`check_batchensemble_layers` accepts only networks whose parameters live in
  ``nn.Linear``, ``nn.Conv2d`` (exact types, i.e. not timm's own conv subclasses such as ``Conv2dSame`` or
  ``StdConv2d``) and ``nn.BatchNorm1d/2d``; anything else (LayerNorm, a ViT's ``cls_token``, ...) is refused naming
  the layer type.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

PREFIX = "timm/"
REFUSED_KWARGS = {
    "pretrained": "endist never downloads; pass local weights with model.kwargs.weights=PATH",
    "checkpoint_path": "use model.kwargs.weights=PATH (loaded with weights_only=True)",
    "pretrained_cfg_overlay": "endist never downloads; pass local weights with model.kwargs.weights=PATH",
    "num_classes": "it is set from the data set",
    "in_chans": "it is set from the data set",
}


def is_timm_name(name: str) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def is_timm_model(net: nn.Module) -> bool:
    """A network built by timm (its class lives in ``timm.models``)."""
    return type(net).__module__.startswith("timm.models")


def create_timm_model(name: str, num_classes: int, *, in_channels: int = 3, **kw: Any) -> nn.Module:
    """``timm.create_model(name[5:], pretrained=False, num_classes, in_chans, **kw)``; ``ValueError`` (one line) for
    an unknown name or a refused keyword."""
    import timm

    arch = name[len(PREFIX):]
    for key, why in REFUSED_KWARGS.items():
        if key in kw and (key != "pretrained" or kw[key]):
            raise ValueError(f"model.kwargs.{key}={kw[key]!r} is not allowed for {name}: {why}")
    kw.pop("pretrained", None)
    if not timm.is_model(arch):
        raise ValueError(f"model.name={name}: {arch!r} is not a timm model (see timm.list_models())")
    try:
        return timm.create_model(arch, pretrained=False, num_classes=int(num_classes), in_chans=int(in_channels), **kw)
    except TypeError as e:
        raise ValueError(f"model.kwargs for {name}: {str(e).splitlines()[0]}") from e


def unwrap_state_dict(obj: Any, path: str) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: a plain state_dict, ``{'state_dict': sd}``, ``{'model': sd}`` (an endist
    ``final.pt`` too); a ``module.`` prefix (DDP) on every key is removed."""
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"weights {path}: not a state_dict (tensors by name), {{'state_dict': ...}} or {{'model': ...}}")
    sd = dict(obj)
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a weights file safely (``weights_only=True``); ``ValueError`` naming the file when missing/unreadable."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"weights file {p} does not exist")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means an unreadable/unsafe file
        raise ValueError(f"weights file {p} is corrupt or not loadable with weights_only=True "
                         f"({type(e).__name__}: {str(e).splitlines()[0][:150] if str(e) else ''})") from e
    return unwrap_state_dict(obj, str(p))


def load_weights_into(net: nn.Module, path: str | Path, num_classes: int | None = None) -> nn.Module:
    """Load the state dict of ``path`` into ``net`` (strict); a mismatch is one ``ValueError`` line listing the
    first differing keys/shapes, or saying the class count when that is what differs."""
    sd = read_weights(path)
    own = net.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [(k, tuple(sd[k].shape), tuple(own[k].shape)) for k in own if k in sd and sd[k].shape != own[k].shape]
    if num_classes is not None:
        for k, got, want in shapes:
            if want[:1] == (num_classes,) and got[1:] == want[1:]:
                raise ValueError(f"weights {path}: predict {got[0]} classes ({k} {list(got)}), "
                                 f"but the data set has {num_classes}")
    if missing or unexpected or shapes:
        parts = ([f"missing {missing[:3]}"] if missing else []) + ([f"unexpected {unexpected[:3]}"] if unexpected else []) \
            + [f"{k}: file {list(g)} vs model {list(w)}" for k, g, w in shapes[:3]]
        raise ValueError(f"weights {path} do not fit the model: {'; '.join(parts)}")
    net.load_state_dict(sd)
    return net


class PreLogits(nn.Module):
    """A timm model without its classifier: ``forward_head(forward_features(x), pre_logits=True)``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(self.net.forward_features(x), pre_logits=True)


def timm_blocks(net: nn.Module) -> list[nn.Module]:
    """``[body, head]`` of a timm model for Hydra's "last layer only" split: ``head`` = a copy of
    ``get_classifier()``, ``body`` = the model (classifier reset to identity) up to the pre-logits features."""
    if not (hasattr(net, "forward_features") and hasattr(net, "forward_head") and hasattr(net, "get_classifier")):
        raise ValueError(f"Hydra cannot split the timm model {type(net).__name__}: it has no forward_features/forward_head")
    head = net.get_classifier()
    if not isinstance(head, nn.Linear):
        raise ValueError(f"Hydra splits a timm model only at a single nn.Linear classifier; "
                         f"{type(net).__name__}'s classifier is a {type(head).__name__}")
    body = copy.deepcopy(net)
    body.reset_classifier(0)
    return [PreLogits(body), copy.deepcopy(head)]


BE_SUPPORTED = (nn.Linear, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d)


def check_batchensemble_layers(net: nn.Module) -> None:
    """``ValueError`` (one line naming the layer type) unless every module that owns parameters is exactly an
    ``nn.Linear``/``nn.Conv2d``/``nn.BatchNorm1d``/``nn.BatchNorm2d`` (what the BatchEnsemble conversion covers)."""
    for name, mod in net.named_modules():
        if type(mod) in BE_SUPPORTED or not any(True for _ in mod.parameters(recurse=False)):
            continue
        raise ValueError(
            f"BatchEnsemble/LatentBE cannot convert layer {name or '<root>'!r} of type {type(mod).__name__} "
            f"(supported: Linear, Conv2d, BatchNorm1d/2d; other layers with parameters are refused)")
