from __future__ import annotations

import pytest
import torch
from helpers import exact_matching


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
