from __future__ import annotations

import matplotlib as mpl
import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

mpl.use("Agg")

from helpers import exact_matching, shared_data_dir, wrong_perm


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")
    parser.addoption("--internet", action="store_true", default=False, help="run tests that download data")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    skip_net = pytest.mark.skip(reason="downloads data: run with --internet")
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "internet" in item.keywords and not config.getoption("--internet"):
            item.add_marker(skip_net)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture
def exact():
    return exact_matching


@pytest.fixture(scope="session")
def _slices():
    import hiref as hr

    return hr.datasets.simulate_slices(n_obs=500, n_genes=30, missing=0.1, seed=0)


@pytest.fixture
def slices(_slices):
    """A simulated pair of slices (500 and 450 cells), fresh copies for every test."""
    return _slices[0].copy(), _slices[1].copy()


@pytest.fixture(scope="session")
def shared_data():
    """The folder of real test slices, ../shared/data from the repository (skip if absent)."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("../shared/data (real test slices) not found; set HIREF_SHARED_DATA")
    return path


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture(scope="session")
def dlpfc(shared_data):
    """The DLPFC pair 151673 -> 151674 on their shared genes (copy before changing them)."""
    import anndata as ad

    a = ad.read_h5ad(shared_data / "dlpfc_151673.h5ad")
    b = ad.read_h5ad(shared_data / "dlpfc_151674.h5ad")
    genes = a.var_names.intersection(b.var_names)
    return a[:, genes].copy(), b[:, genes].copy()


@pytest.fixture(scope="session")
def _dlpfc_aligned(dlpfc):
    import hiref as hr

    a, b = (x.copy() for x in dlpfc)
    hr.tl.align(a, b, progress=False)
    return a, b


@pytest.fixture
def dlpfc_aligned(_dlpfc_aligned):
    """The DLPFC pair aligned by the default recipe (``hr.tl.align(a, b)``, once a session), fresh copies."""
    return _dlpfc_aligned[0].copy(), _dlpfc_aligned[1].copy()


@pytest.fixture(scope="session")
def dlpfc_position(dlpfc):
    """scipy's optimal one-to-one matching of the DLPFC pair on position alone (squared distances): perm a -> b."""
    a, b = dlpfc
    rows, cols = linear_sum_assignment(cdist(a.obsm["spatial"], b.obsm["spatial"], "sqeuclidean"))
    perm = np.full(a.n_obs, -1, dtype=np.int64)
    perm[rows] = cols
    return perm


@pytest.fixture(scope="session")
def dlpfc_references(dlpfc, dlpfc_position):
    """Layer accuracy on the DLPFC pair of two reference matchings, scored as hiref's.

    ``position``: scipy's optimal one-to-one matching on position alone; ``chance``: the best of
    three random matchings.
    """
    import hiref as hr

    from helpers import store_random_matching

    a, b = (x.copy() for x in dlpfc)
    hr.tl.store_matching(a, b, dlpfc_position, key_added="position")
    out = {"position": hr.tl.label_agreement(a, b, obs="layer", key="position").loc["overall", "agreement"]}
    chance = []
    for seed in range(3):
        store_random_matching(a, b, key_added="random", seed=seed)
        chance.append(hr.tl.label_agreement(a, b, obs="layer", key="random").loc["overall", "agreement"])
    out["chance"] = max(chance)
    return out


@pytest.fixture(params=["random", "half"])
def wrong_solver(request, monkeypatch):
    """The engine answers wrongly: every solve hiref's tools call returns a (half) random matching.

    Patched where the tools import ``solve`` (``hr.tl.align`` and its auto recipe, ``hr.pp.register``
    and so ``hr.tl.stack``, the command line through them). The value is the kind of wrong answer.
    """
    import hiref.pp._motion
    import hiref.tl._align
    import hiref.tl._auto

    def wrong(module):
        real = module.solve

        def solve(X, Y, *args, **kwargs):
            matching = real(X, Y, *args, **kwargs)
            matching.perm = wrong_perm(matching.perm, request.param, seed=1)
            return matching

        return solve

    for module in (hiref.tl._align, hiref.tl._auto, hiref.pp._motion):
        monkeypatch.setattr(module, "solve", wrong(module))
    return request.param


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module (small problems run faster so, and the machine may be shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
