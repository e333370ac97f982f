"""Bad parameters and inputs raise ValueError/TypeError naming the argument."""

import math

import numpy as np
import pytest

from tikhon.operators.prox import (
    L0,
    L1,
    L2,
    L21,
    Box,
    Huber,
    KullbackLeibler,
    L1Ball,
    L2Ball,
    NonNegative,
    NuclearNorm,
    Simplex,
    SquaredL2,
    SumOfNorms,
    Zero,
)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: L1(weights=np.array([1.0, -0.1])), "weights"),
        (lambda: L1(weights=np.array([1.0, np.nan])), "weights"),
        (lambda: L21(weights=-1.0), "weights"),
        (lambda: L21(weights=np.array([np.inf])), "weights"),
        (lambda: SumOfNorms(np.array([0, 1, -2])), "groups"),
        (lambda: SumOfNorms(np.array([0, 1, 1]), weights=np.array([1.0, -1.0])), "weights"),
        (lambda: SumOfNorms(np.array([0, 1, 1]), weights=np.array([1.0])), "weights"),
        (lambda: Huber(0.0), "delta"),
        (lambda: Huber(-1.0), "delta"),
        (lambda: KullbackLeibler(np.array([1.0, -1.0])), "b"),
        (lambda: KullbackLeibler(np.array([1.0]), background=-0.1), "background"),
        (lambda: KullbackLeibler(np.array([np.inf])), "b"),
        (lambda: Box(1.0, 0.0), "lower"),
        (lambda: Box(np.array([0.0, 2.0]), np.array([1.0, 1.0])), "lower"),
        (lambda: Box(np.nan, 1.0), "lower"),
        (lambda: Box(None, -np.inf), "upper"),
        (lambda: Simplex(0.0), "radius"),
        (lambda: Simplex(-1.0), "radius"),
        (lambda: L1Ball(np.nan), "radius"),
        (lambda: L2Ball(-2.0), "radius"),
        (lambda: L2Ball(1.0, center=np.array([np.inf])), "center"),
        (lambda: SquaredL2(b=np.array([np.nan])), "b"),
    ],
)
def test_bad_parameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_types():
    with pytest.raises(TypeError, match="groups"):
        SumOfNorms(np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match="axis"):
        L21(axis=1.5)
    with pytest.raises(TypeError, match="axis"):
        Simplex(axis="0")
    with pytest.raises(TypeError, match="op"):
        SquaredL2(op=np.eye(3))
    with pytest.raises(TypeError, match="x"):
        L1().prox(np.arange(3), 1.0)  # integer input is refused, not cast


@pytest.mark.parametrize("f", [L1(), L0(), L21(), Huber(), SquaredL2(), NonNegative(), Zero()])
@pytest.mark.parametrize("tau", [0.0, -1.0, math.inf, math.nan])
def test_bad_tau(f, tau):
    with pytest.raises(ValueError, match="tau"):
        f.prox(np.ones((2, 3)), tau)


def test_shape_errors():
    with pytest.raises(ValueError, match="axis"):
        L21(axis=3).prox(np.ones((2, 3)), 1.0)
    with pytest.raises(ValueError, match="weights"):
        L21(weights=np.ones(4)).prox(np.ones((2, 3)), 1.0)
    with pytest.raises(ValueError, match="shape"):
        SumOfNorms(np.zeros(4, dtype=int)).prox(np.ones(5), 1.0)
    with pytest.raises(ValueError, match="2 dimensions"):
        NuclearNorm().prox(np.ones(5), 1.0)
    with pytest.raises(ValueError, match="tau"):
        L2().prox(np.ones(3), np.array([1.0, 2.0, 3.0]))  # not separable
    with pytest.raises(ValueError, match="tau"):
        NuclearNorm().prox(np.ones((2, 2)), np.array([[1.0, 2.0], [1.0, 1.0]]))


def test_l0_has_no_conjugate():
    with pytest.raises(ValueError, match="convex"):
        L0().conj


def test_indicator_values_and_tolerance():
    assert NonNegative()(np.array([0.0, 1.0])) == 0.0
    assert NonNegative()(np.array([-1e-3, 1.0])) == math.inf
    assert NonNegative()(np.array([-1e-12, 1.0])) == 0.0  # within the documented tolerance
    assert Simplex()(np.array([0.5, 0.5])) == 0.0
    assert Simplex()(np.array([0.5, 0.6])) == math.inf
    assert L2Ball(1.0)(np.array([0.6, 0.8])) == 0.0
    assert L2Ball(1.0)(np.array([0.6, 0.81])) == math.inf
    assert L1Ball(1.0)(np.array([0.5, -0.5])) == 0.0
    assert L1Ball(1.0)(np.array([0.5, -0.51])) == math.inf
    assert Box(0, 1)(np.array([0.0, 1.0])) == 0.0
    assert Box(0, 1)(np.array([0.0, 1.01])) == math.inf
    assert KullbackLeibler(np.array([1.0, 0.0]))(np.array([0.0, 1.0])) == math.inf
    assert KullbackLeibler(np.array([0.0, 0.0]))(np.array([0.0, 1.0])) == pytest.approx(1.0)
    # float32 inputs: the projection of a float32 point is feasible
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    assert Simplex(3.0)(Simplex(3.0).prox(x, 1.0)) == 0.0
    assert L2Ball(0.5)(L2Ball(0.5).prox(x, 1.0)) == 0.0
