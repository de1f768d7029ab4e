"""ResNet-20 (He et al. 2016, CIFAR) and the MLP on 28×28×1 MNIST inputs: parameter counts from the
architecture formula, output shapes, and use as a Hydra body / BatchEnsemble base."""

from __future__ import annotations

import pytest
import torch

from endist_vision.models import available_models, create_model
from endist_vision.models import BatchEnsembleNet
from endist_vision.models.wrappers.hydra import HydraNet


def _conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k


def _bn(c: int) -> int:
    return 2 * c


def resnet20_params(k: int, shortcut: str) -> int:
    """He et al. §4.2: 3×3 conv(16) + BN; 3 stages × 3 BasicBlocks (conv-BN-conv-BN) at 16/32/64
    channels; option A shortcuts have no parameters, option B adds 1×1 conv + BN at the 2 down-samplings;
    linear 64 → K."""
    total = _conv(3, 16, 3) + _bn(16)
    cin = 16
    for c in (16, 32, 64):
        for _ in range(3):
            total += _conv(cin, c, 3) + _bn(c) + _conv(c, c, 3) + _bn(c)
            if shortcut == "B" and cin != c:
                total += _conv(cin, c, 1) + _bn(c)
            cin = c
    return total + 64 * k + k


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_resnet20_parameter_count(shortcut: str) -> None:
    m = create_model("resnet20", 10, shortcut=shortcut)
    n = sum(p.numel() for p in m.parameters())
    assert n == resnet20_params(10, shortcut)
    assert 0.265e6 < n < 0.275e6  # "0.27M" of He et al. Table 6
    assert "resnet20" in available_models()
    assert sum(isinstance(b, torch.nn.Conv2d) for b in m.modules()) == 19 + (2 if shortcut == "B" else 0)  # 20 weighted layers - fc


def test_resnet20_forward_and_downsampling() -> None:
    torch.manual_seed(0)
    m = create_model("resnet20", 7).eval()
    x = torch.rand(3, 3, 32, 32)
    assert m(x).shape == (3, 7)
    feats = m.net[:-1](m.normalize(x))  # stem + 9 blocks: two stride-2 stages -> 8×8×64
    assert feats.shape == (3, 64, 8, 8)


def test_resnet20_as_hydra_body_and_batchensemble() -> None:
    torch.manual_seed(0)
    net = create_model("resnet20", 10).net.eval()
    x = torch.rand(2, 3, 32, 32)
    h = HydraNet.from_network(net, head_blocks=3, num_heads=4).eval()
    assert len(h.body) == 8 and h(x).shape == (2, 4, 10)  # stem + 7 blocks | 2 blocks + classifier
    with torch.no_grad():
        torch.testing.assert_close(h(x)[:, 0], net(x))  # the split composes to the original network
    be = BatchEnsembleNet.from_plain(create_model("resnet20", 10).net, 3)
    assert be(x).shape == (2, 3, 10)


def test_mlp_on_mnist_shape_and_hydra() -> None:
    m = create_model("mlp", 10, in_channels=1, mean=[0.1307], std=[0.3081], in_features=784, hidden=32, depth=2)
    x = torch.rand(5, 1, 28, 28)
    assert m(x).shape == (5, 10)
    assert m.net[1].in_features == 784
    h = HydraNet.from_network(m.net, head_blocks=2, num_heads=3)
    assert h(m.normalize(x)).shape == (5, 3, 10)
