import torch

from locator.rrm import ResidualRetrievalModule


def test_rrm_structure_and_unit_norm_output():
    torch.manual_seed(0)
    rrm = ResidualRetrievalModule(32, hidden_dim=64)
    out = rrm(torch.randn(5, 32) * 10)
    assert out.shape == (5, 32)
    assert torch.allclose(out.norm(dim=1), torch.ones(5), atol=1e-6)
    layers = [type(m).__name__ for m in rrm.children()]
    assert layers == ["LayerNorm", "Linear", "Linear", "LayerNorm"]
    assert (rrm.fc1.in_features, rrm.fc1.out_features, rrm.fc2.out_features) == (32, 64, 32)


def test_residual_connection_matters():
    torch.manual_seed(0)
    with_skip = ResidualRetrievalModule(16, hidden_dim=8)
    without = ResidualRetrievalModule(16, hidden_dim=8, residual=False)
    without.load_state_dict(with_skip.state_dict())
    x = torch.randn(4, 16)
    expected = torch.nn.functional.normalize(with_skip.norm_out(
        with_skip.fc2(torch.relu(with_skip.fc1(with_skip.norm_in(x)))) + with_skip.norm_in(x)), dim=1)
    assert torch.allclose(with_skip(x), expected, atol=1e-6)
    assert not torch.allclose(with_skip(x), without(x))
    # Zeroed MLP: the residual path alone gives LayerNorm(LayerNorm(x)), normalised.
    with torch.no_grad():
        with_skip.fc2.weight.zero_()
        with_skip.fc2.bias.zero_()
    assert torch.allclose(with_skip(x), torch.nn.functional.normalize(with_skip.norm_out(with_skip.norm_in(x)), dim=1), atol=1e-6)
