"""The shared argument checks and the array layer's backend rule."""

import numpy as np
import pytest

from tikhon._core import arrays, checks


@pytest.mark.parametrize("check, bad, exc", [
    (checks.check_positive, 0.0, ValueError), (checks.check_positive, -1.0, ValueError),
    (checks.check_positive, np.inf, ValueError), (checks.check_positive, "1", TypeError),
    (checks.check_positive, True, TypeError), (checks.check_nonneg, -1e-9, ValueError),
    (checks.check_nonneg, np.nan, ValueError), (checks.check_real, np.inf, ValueError),
    (checks.check_positive_int, 0, ValueError), (checks.check_positive_int, 2.0, TypeError),
    (checks.check_positive_int, True, TypeError), (checks.check_tolerance, -1.0, ValueError),
])
def test_scalar_checks_name_the_argument(check, bad, exc):
    with pytest.raises(exc, match="where: value"):
        check(bad, "value", "where")


def test_scalar_checks_accept_numpy_scalars_and_0d_arrays():
    assert checks.check_positive(np.float32(2.0), "v", "w") == 2.0
    assert checks.check_positive(np.array(3.0), "v", "w") == 3.0
    assert checks.check_nonneg(np.inf, "v", "w", allow_inf=True) == np.inf
    assert checks.check_positive_int(np.int64(4), "v", "w") == 4
    assert checks.check_positive(None, "v", "w", allow_none=True) is None


def test_array_checks():
    with pytest.raises(TypeError, match="f: x must be a float32 or float64 array"):
        checks.check_finite_array(np.ones(3, dtype=int), "x", "f")
    with pytest.raises(ValueError, match="f: x contains NaN or inf"):
        checks.check_finite_array(np.array([1.0, np.nan]), "x", "f")
    with pytest.raises(ValueError, match=r"f: x has shape \(3,\), expected \(4,\)"):
        checks.check_finite_array(np.ones(3), "x", "f", shape=(4,))
    with pytest.raises(ValueError, match="nonnegative"):
        checks.check_finite_array(-np.ones(3), "x", "f", nonneg=True)


def test_marginals_one_mass_tolerance():
    a = checks.check_marginal(None, "a", 4, "f")
    np.testing.assert_allclose(a, 0.25)
    b = checks.check_marginal([0.5, 0.5 * (1 + 0.5 * checks.MASS_RTOL)], "b", 2, "f")
    checks.check_equal_mass(a, b, "f")  # within the tolerance
    with pytest.raises(ValueError, match="equal mass"):
        checks.check_equal_mass(a, 2 * b, "f")
    # just outside the one tolerance
    with pytest.raises(ValueError, match="equal mass"):
        checks.check_equal_mass(a, np.array([0.5, 0.5 * (1 + 3 * checks.MASS_RTOL)]), "f")
    for bad, match in (([1.0, -1.0], "negative"), ([0.0, 0.0], "zero total mass"),
                       ([1.0, np.nan], "NaN"), ([1.0], r"shape \(2,\)")):
        with pytest.raises(ValueError, match=match):
            checks.check_marginal(bad, "b", 2, "f")


def test_mixed_backends_are_refused_by_name():
    torch = pytest.importorskip("torch")
    assert arrays.backend_of("f", a=np.ones(2), b=None) == "numpy"
    assert arrays.backend_of("f", a=torch.ones(2)) == "torch"
    with pytest.raises(TypeError, match=r"f: mixed NumPy and torch inputs \(C torch; a NumPy\)"):
        arrays.backend_of("f", a=np.ones(2), C=torch.ones(2))


def test_fixed_step_refused():
    class Fixed:
        fixed_step = True

        def _label(self):
            return "Denoiser"

        _prox = _call = None

    with pytest.raises(ValueError, match="g \\(Denoiser\\) has a fixed step"):
        checks.refuse_fixed_step(checks.check_functional(Fixed(), "g", "fista"), "g", "fista")
    with pytest.raises(TypeError, match="f must be a tikhon Functional"):
        checks.check_functional(object(), "f", "fista")


def test_int_and_dtype_checks():
    assert checks.check_int(np.int32(3), "n", "f", minimum=2) == 3
    with pytest.raises(TypeError, match="f: n must be an int"):
        checks.check_int(3.0, "n", "f")
    with pytest.raises(ValueError, match="f: n must be at least 2"):
        checks.check_int(1, "n", "f", minimum=2)
    assert checks.check_float_dtype("float32", "dtype", "f") == np.float32
    with pytest.raises(TypeError, match="f: dtype must be float32 or float64"):
        checks.check_float_dtype(np.int16, "dtype", "f")


def test_same_device():
    torch = pytest.importorskip("torch")
    assert checks.check_same_device("f", a=torch.ones(1), b=None, c=np.ones(1)).type == "cpu"
    assert checks.check_same_device("f", a=np.ones(1)) is None
    meta = torch.ones(1, device="meta")
    with pytest.raises(ValueError, match="f: all tensors must be on one device"):
        checks.check_same_device("f", a=torch.ones(1), b=meta)


def test_interval_and_axis_checks():
    assert checks.check_interval(0.0, "theta", "f", 0.0, 1.0) == 0.0
    for bad in (-0.1, 1.1, np.nan):
        with pytest.raises(ValueError, match=r"f: theta must be in \[0, 1\]"):
            checks.check_interval(bad, "theta", "f", 0.0, 1.0)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        checks.check_interval(0.0, "p", "f", 0.0, 1.0, open_lo=True)
    assert checks.check_axis(-1, 3, "axis", "f") == 2
    with pytest.raises(ValueError, match="out of range"):
        checks.check_axis(3, 3, "axis", "f")
    with pytest.raises(TypeError, match="axis must be an int"):
        checks.check_axis(1.0, None, "axis", "f")
