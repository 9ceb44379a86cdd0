import math

import numpy as np
import pytest
import torch
from scipy.stats import vonmises_fisher

from locator.geo import latlon_to_xyz
from locator.errors import SettingsError
from locator.heads import HEADS, create_head
from locator.heads.mvmf import vmf_log_density
from tests.locator.heads.helpers import nested_partitions


@pytest.mark.parametrize("kappa", [0.5, 10.0, 1e3, 1e5])
def test_vmf_log_density_matches_scipy(kappa):
    rng = np.random.default_rng(int(kappa))
    mu = latlon_to_xyz(30.0, 60.0)
    # Points near the mean (where high-κ densities are not vanishing) and a few far away.
    spread = 3.0 / math.sqrt(kappa)
    x = mu + rng.normal(size=(40, 3)) * spread
    x = np.concatenate([x, rng.normal(size=(5, 3))])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    expected = vonmises_fisher(mu, kappa).logpdf(x)
    ours = vmf_log_density(torch.tensor(x), torch.tensor(mu), torch.tensor(kappa, dtype=torch.float64)).numpy()
    finite = np.isfinite(expected)
    assert np.allclose(ours[finite], expected[finite], rtol=1e-9, atol=1e-6)


def test_mvmf_loss_is_finite_with_gradients_from_kappa_1_to_1e6():
    partitions = nested_partitions()
    head = create_head("mvmf", 8, partitions)
    with torch.no_grad():
        head.log_kappa.copy_(torch.linspace(0.0, math.log(1e6), head.num_cells))
    features = torch.randn(16, 8)
    latlon = torch.tensor(np.stack([partitions[-1].lat, partitions[-1].lon], 1), dtype=torch.float32)
    loss = head.loss(features, torch.zeros(16, 3, dtype=torch.long), latlon)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(head.log_kappa.grad).all() and torch.isfinite(head.classifier.weight.grad).all()


def test_mvmf_prediction_is_the_mean_of_the_heaviest_component_and_init_from_ce():
    partitions = nested_partitions()
    ce = create_head("ce", 4, partitions)
    mvmf = create_head("mvmf", 4, partitions)
    mvmf.init_from_ce(ce)
    features = torch.randn(10, 4)
    assert torch.allclose(mvmf.cell_probabilities(features), ce.cell_probabilities(features))
    prediction = mvmf.predict(features)
    best = ce.cell_probabilities(features).argmax(1).numpy()
    assert np.array_equal(prediction.cell, best)
    assert np.allclose(prediction.lat, partitions[-1].lat[best]) and np.allclose(prediction.lon, partitions[-1].lon[best])


def test_hc_inference_equals_brute_force_product_over_the_hierarchy():
    partitions = nested_partitions()
    head = create_head("hc", 6, partitions)
    features = torch.randn(7, 6)
    with torch.no_grad():
        per_level = [clf(features).softmax(1).numpy() for clf in head.classifiers]
        probabilities = head.cell_probabilities(features).numpy()
    # Brute force: for each fine cell find its ancestors by S2 containment, multiply the probabilities.
    import s2sphere
    fine_cells = [s2sphere.CellId.from_token(t) for t in partitions[-1].tokens]
    product = np.ones((7, len(fine_cells)))
    for level, partition in enumerate(partitions):
        for f, fine in enumerate(fine_cells):
            (owner,) = [k for k, t in enumerate(partition.tokens) if s2sphere.CellId.from_token(t).contains(fine)]
            product[:, f] *= per_level[level][:, owner]
    assert np.allclose(probabilities, product / product.sum(1, keepdims=True), atol=1e-6)
    assert np.array_equal(head.predict(features).cell, product.argmax(1))


def test_losses_train_every_head_on_separable_features():
    partitions = nested_partitions()
    torch.manual_seed(0)
    fine = partitions[-1]
    n_cells = len(fine)
    prototypes = torch.randn(n_cells, 16) * 3
    cells = torch.arange(n_cells).repeat(20)
    features = prototypes[cells] + 0.1 * torch.randn(len(cells), 16)
    classes = torch.stack([torch.from_numpy(p.lookup(fine.lat[cells], fine.lon[cells])) for p in partitions], 1)
    latlon = torch.tensor(np.stack([fine.lat[cells], fine.lon[cells]], 1), dtype=torch.float32)
    for kind in HEADS.names():
        head = create_head(kind, 16, partitions)
        optimiser = torch.optim.Adam(head.parameters(), lr=0.05)
        for _ in range(150):
            optimiser.zero_grad()
            loss = head.loss(features, classes, latlon)
            loss.backward()
            optimiser.step()
        assert (head.predict(features).cell == cells.numpy()).mean() > 0.95, kind


def test_unknown_head_kind():
    with pytest.raises(SettingsError, match="unknown head kind 'xx'; choose one of ce, hc, mvmf"):
        create_head("xx", 4, nested_partitions())
