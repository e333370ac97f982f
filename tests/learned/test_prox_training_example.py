"""The first experiment of examples/plot_prox_training.py at a reduced size.

Prox-L1 training (SGD + the L1 prox of :func:`tikhon.learned.attach_prox`)
then a masked fine-tune must reach >= 90 % weight sparsity, stay close to
the dense net, beat global magnitude pruning to the same sparsity followed
by the same fine-tune (the issue's bar, which gives the prox net PROX_EPOCHS
more training epochs), and tie, within TIE_MARGIN, magnitude pruning given
the same training budget (a fine-tune of PROX_EPOCHS + FT_EPOCHS epochs).
The reduced bar (shorter training, one ``lam``) is looser on accuracy than
the full example's (<= 1 point): see REDUCED_MAX_LOSS.
"""

import importlib.util
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("skimage")
torch.set_num_threads(1)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plot_prox_training.py"
DENSE_EPOCHS, PROX_EPOCHS, FT_EPOCHS, LAM = 30, 20, 10, 0.03
# measured at this size (half the example's epochs): dense test 97.04 %, prox-L1 96.11 % at
# 93.95 % sparsity (0.93 point lost), magnitude pruning + the same fine-tune 93.89 %. The bar
# keeps the example's >= 90 % and "beats magnitude pruning" but allows 1.5 points instead of 1:
# 0.93 is too close to 1 to assert across platforms (one test digit is 0.19 point).
REDUCED_MAX_LOSS = 1.5
# equal budget (magnitude + a 30-epoch fine-tune), measured at this size: val 97.22 for both,
# test 96.67 against prox-L1's 96.11 (prox -0.56 pt, 3 test digits). Prox-L1 does not beat the
# fair baseline here; the test asserts the tie within 1 point (5 test digits) in both directions.
TIE_MARGIN = 1.0


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("plot_prox_training", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prox_l1_beats_magnitude_pruning_at_reduced_size(example):
    data = example.load_digits_split(0)
    dense = example.train_dense(data, epochs=DENSE_EPOCHS)
    dense_test = example.accuracy(dense, data, "test")
    res = example.l1_experiment(dense, data, lams=(LAM,), prox_epochs=PROX_EPOCHS, ft_epochs=FT_EPOCHS)
    row = res["chosen"]
    # the measured sparsity is the fraction of exact zeros the prox left in the weights
    assert row["sparsity"] == pytest.approx(example.weight_sparsity(row["net"]))
    assert row["sparsity"] >= 90.0
    # magnitude pruning removed as many weights (up to rounding of the count)
    assert abs(row["mag_sparsity"] - row["sparsity"]) < 1e-2
    assert row["prox_test"] >= dense_test - REDUCED_MAX_LOSS, (row["prox_test"], dense_test)
    # the baseline: the same 10-epoch fine-tune, so the prox net trained 20 epochs more;
    # the margin (+2.2 measured) is mostly that budget, not evidence that prox-L1 prunes better
    assert row["prox_test"] > row["mag_test"], (row["prox_test"], row["mag_test"])
    # the fair baseline: as many epochs after the dense net as the prox net had
    assert row["mag_eq_epochs"] == PROX_EPOCHS + FT_EPOCHS
    assert example.weight_sparsity(row["mag_eq"]) == pytest.approx(row["mag_sparsity"])
    assert abs(row["prox_test"] - row["mag_eq_test"]) <= TIE_MARGIN, (row["prox_test"], row["mag_eq_test"])
    assert abs(row["prox_val"] - row["mag_eq_val"]) <= TIE_MARGIN, (row["prox_val"], row["mag_eq_val"])


def test_magnitude_prune_zeroes_the_smallest_weights(example):
    net = example.make_mlp(0)
    n_zero = 5000
    pruned = example.magnitude_prune(net, n_zero)
    w = torch.cat([m.weight.detach().reshape(-1) for m in example.linears(net)])
    wp = torch.cat([m.weight.detach().reshape(-1) for m in example.linears(pruned)])
    assert int((wp == 0).sum()) == n_zero
    # the zeroed entries are exactly the n_zero smallest magnitudes (no ties at init)
    assert torch.equal((wp == 0).nonzero(), w.abs().argsort()[:n_zero].sort().values[:, None])
    assert torch.equal(wp[wp != 0], w[wp != 0])


def test_binarize_rows_is_the_per_row_scaled_sign(example):
    net = example.make_mlp(1)
    b = example.binarize_rows(net)
    for m, mb in zip(example.linears(net), example.linears(b)):
        w = m.weight.detach()
        ref = w.abs().mean(dim=1, keepdim=True) * torch.where(w >= 0, 1.0, -1.0)
        torch.testing.assert_close(mb.weight.detach(), ref)
        assert torch.equal(mb.bias, m.bias)
