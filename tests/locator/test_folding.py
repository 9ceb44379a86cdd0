"""Folded batch norms against the unfolded model (float32), and the refusal of a pairing that is not a chain."""

import timm
import torch
from torch import nn

from locator.folding import fold_batch_norms, folded


def _with_random_statistics(model: nn.Module) -> nn.Module:
    generator = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=generator) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=generator) - 0.5)
    return model.eval()


def test_folding_an_efficientnet_computes_what_it_computed():
    model = _with_random_statistics(timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0))
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    copy, count = fold_batch_norms(model)
    assert count == norms and not any(isinstance(m, nn.BatchNorm2d) for m in copy.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    x = torch.randn(2, 3, 80, 64)
    with torch.no_grad():
        expected, got = model(x), copy(x)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))


class _NotAChain(nn.Module):
    """A norm registered after a convolution but applied to something else."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.norm = nn.BatchNorm2d(3)

    def forward(self, x):
        return self.conv(x) + self.norm(x)


def test_a_pairing_that_changes_the_output_is_refused():
    model = _with_random_statistics(_NotAChain())
    assert fold_batch_norms(model)[1] == 1
    assert folded(model, torch.randn(1, 3, 16, 16)) is None
    chain = _with_random_statistics(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()))
    assert isinstance(folded(chain, torch.randn(1, 3, 16, 16)), nn.Sequential)
