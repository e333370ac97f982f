"""parameter_sweep: the table of a Python loop over the grid, on every scheduler."""

import itertools
import warnings

import numpy as np
import pytest

pytest.importorskip("dask")
pytest.importorskip("distributed")

from tikhon.data import shepp_logan, simulate_sinogram  # noqa: E402
from tikhon.metrics import psnr  # noqa: E402
from tikhon.solvers import ConvergenceWarning, parameter_sweep, tv_reconstruction  # noqa: E402

GRID = {"a": [1, 2, 3], "b": [0.5, -1.0], "name": ["x", "y"]}


def _fn():
    # defined here, not at module level: cloudpickle sends a nested function by value,
    # so the cluster's workers need not import this test module
    def fn(a, b, name):
        return {"value": a * b, "tag": f"{name}{a}", "positive": a * b > 0, "count": a + 1}

    return fn


def _loop(fn, grid):
    names = list(grid)
    rows = [dict(zip(names, combo)) for combo in itertools.product(*grid.values())]
    return rows, [fn(**r) for r in rows]


def _check_table(table, fn, grid):
    rows, outputs = _loop(fn, grid)
    assert list(table) == list(grid) + ["value", "tag", "positive", "count"]
    for name in grid:
        assert list(table[name]) == [r[name] for r in rows]
    for key in ("value", "tag", "positive", "count"):
        assert list(table[key]) == [o[key] for o in outputs]
    assert table["value"].dtype == float and table["count"].dtype == np.int64
    assert table["positive"].dtype == bool


@pytest.mark.parametrize("scheduler", [None, "synchronous", "processes"])
def test_grid_matches_a_loop(scheduler):
    fn = _fn()
    table = parameter_sweep(fn, GRID, scheduler=scheduler, as_frame=False,
                            n_workers=2 if scheduler == "processes" else None)
    _check_table(table, fn, GRID)


def test_on_a_local_cluster():
    from distributed import Client, LocalCluster

    fn = _fn()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=40) as cluster, Client(cluster) as client:
        table = parameter_sweep(fn, GRID, scheduler=client, as_frame=False)
        with pytest.raises(ValueError, match="n_workers sizes the local schedulers"):
            parameter_sweep(fn, GRID, scheduler=client, n_workers=2)
    _check_table(table, fn, GRID)


def test_result_outputs_are_summarized():
    x = shepp_logan(32)
    angles = np.linspace(0, np.pi, 16, endpoint=False)
    y, A = simulate_sinogram(x, angles, level=0.01, rng=0, return_operator=True)

    def fn(lam, max_iter):
        return tv_reconstruction(A, y, lam, tol=1e-3, max_iter=max_iter)

    grid = {"lam": [0.2, 1.0], "max_iter": [3, 2000]}
    with warnings.catch_warnings():
        # max_iter=3 stops early on purpose: the status column says so
        warnings.simplefilter("ignore", ConvergenceWarning)
        table = parameter_sweep(fn, grid, as_frame=False, n_workers=2)
        rows, results = _loop(fn, grid)
    assert list(table["lam"]) == [r["lam"] for r in rows]  # info["lam"] merged into the column
    assert list(table["status"]) == [r.status for r in results]
    assert list(table["converged"]) == [r.converged for r in results]
    assert list(table["n_iter"]) == [r.n_iter for r in results]
    np.testing.assert_allclose(table["objective"], [r.info["objective"] for r in results],
                               rtol=1e-12)
    assert "x" not in table and "history" not in table

    def quality(lam):
        return float(psnr(tv_reconstruction(A, y, lam, tol=1e-3).x, x))

    scores = parameter_sweep(quality, {"lam": [0.1, 0.5]}, as_frame=False)
    assert list(scores) == ["lam", "value"]
    np.testing.assert_allclose(scores["value"], [quality(0.1), quality(0.5)], rtol=1e-12)


def test_list_of_points_and_missing_columns():
    def fn(**p):
        return {"s": sum(p.values())}

    points = [{"a": 1, "b": 2}, {"a": 5}, {"c": 1.5}]
    table = parameter_sweep(fn, points, scheduler="synchronous", as_frame=False)
    assert list(table) == ["a", "b", "c", "s"]
    np.testing.assert_array_equal(table["a"], [1, 5, np.nan])
    np.testing.assert_array_equal(table["b"], [2, np.nan, np.nan])
    np.testing.assert_array_equal(table["s"], [3, 5, 1.5])


def test_dataframe_when_pandas_is_there(monkeypatch):
    pd = pytest.importorskip("pandas")
    fn = _fn()
    frame = parameter_sweep(fn, GRID, scheduler="synchronous")
    assert isinstance(frame, pd.DataFrame)
    table = parameter_sweep(fn, GRID, scheduler="synchronous", as_frame=False)
    assert list(frame.columns) == list(table)
    for key in table:
        assert list(frame[key]) == list(table[key])
    from tikhon.solvers import sweeps

    monkeypatch.setattr(sweeps, "_has_pandas", lambda: False)
    assert isinstance(parameter_sweep(fn, GRID, scheduler="synchronous"), dict)
    with pytest.raises(ImportError, match="pandas"):
        parameter_sweep(fn, GRID, scheduler="synchronous", as_frame=True)


def test_bad_input():
    fn = _fn()
    with pytest.raises(TypeError, match="fn must be callable"):
        parameter_sweep(3, GRID)
    with pytest.raises(ValueError, match="grid is empty"):
        parameter_sweep(fn, {})
    with pytest.raises(ValueError, match="grid is empty"):
        parameter_sweep(fn, [])
    with pytest.raises(TypeError, match="grid must be a dict"):
        parameter_sweep(fn, 3)
    with pytest.raises(TypeError, match=r"grid\['a'\] must be a sequence"):
        parameter_sweep(fn, {"a": 1.0})
    with pytest.raises(ValueError, match=r"grid\['a'\] has no values"):
        parameter_sweep(fn, {"a": []})
    with pytest.raises(TypeError, match=r"grid\[1\] must be a dict"):
        parameter_sweep(fn, [{"a": 1}, 2])
    with pytest.raises(ValueError, match="scheduler must be one of"):
        parameter_sweep(fn, GRID, scheduler="cluster")
    with pytest.raises(TypeError, match="as_frame must be a bool"):
        parameter_sweep(fn, GRID, as_frame="yes")
    with pytest.raises(TypeError, match="each output must be a scalar"):
        parameter_sweep(lambda a: {"v": np.ones(3)}, {"a": [1]}, scheduler="synchronous")
    with pytest.raises(TypeError, match="must return a dict of scalars"):
        parameter_sweep(lambda a: [a], {"a": [1]}, scheduler="synchronous")
    with pytest.raises(ValueError, match="differs from the grid parameter"):
        parameter_sweep(lambda a: {"a": a + 1}, {"a": [1]}, scheduler="synchronous")
    with pytest.raises(ZeroDivisionError):  # fn's own error comes through
        parameter_sweep(lambda a: 1 / a, {"a": [1, 0]}, scheduler="synchronous")


def test_workqueue_layer_runs_one_thread(monkeypatch):
    import numba

    from tikhon.solvers import sweeps

    monkeypatch.setattr(numba.config, "THREADING_LAYER", "workqueue")
    with pytest.warns(UserWarning, match="workqueue"):
        plan = sweeps.plan_scheduler("threads", 2, "parameter_sweep")
    assert plan.n_workers == 1 and plan.exclusive
    monkeypatch.setattr(numba.config, "THREADING_LAYER", "omp")
    assert sweeps.plan_scheduler("threads", 2, "parameter_sweep").n_workers == 2
