import json
import os
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

import msinet_reid
from msinet_reid.data import make_market1501
from msinet_reid.models import MSINET_IMAGENET, MSINet
from msinet_reid.weights import ENV_VAR

from helpers import deterministic_state_dict, random_checkpoint

DATA = Path(__file__).parent / 'data'
# The synthetic Market-1501 most tests train on: small enough for seconds per epoch.
TINY_MARKET = dict(num_train_ids=8, num_test_ids=4, height=64, width=32)
# The seed of every test; tools/numerics_spread.py runs the numerics tests with others.
SEED = int(os.environ.get('MSINET_TEST_SEED', '0'))


@pytest.fixture(scope='session')
def reference_facts() -> dict:
    """Facts about the reference implementation (state_dict keys/shapes, param counts)."""
    return json.loads((DATA / 'msinet_reference.json').read_text())


@pytest.fixture(scope='session')
def reference_outputs() -> dict:
    """Outputs of the reference implementation for ``helpers.deterministic_*`` inputs."""
    with np.load(DATA / 'reference_outputs.npz') as outputs:
        return {key: torch.from_numpy(outputs[key]) for key in outputs.files}


@pytest.fixture(scope='session')
def tiny_market(tmp_path_factory):
    """``tiny_market(**settings)``: the root of a synthetic Market-1501 made with
    ``TINY_MARKET`` updated by ``settings``, generated once per session per settings."""
    roots = {}

    def make(**settings) -> Path:
        settings = {**TINY_MARKET, **settings}
        key = tuple(sorted(settings.items()))
        if key not in roots:
            roots[key] = tmp_path_factory.mktemp('market')
            make_market1501(roots[key], progress=False, **settings)
        return roots[key]

    return make


@pytest.fixture(scope='session')
def market64(tiny_market):
    """A tiny synthetic Market-1501 of 64x32 crops, ``(data root, dataset folder)``: its
    training crops to calibrate on, its query and gallery to rank."""
    root = tiny_market(height=64, width=32)
    return root, root / 'market1501' / 'Market-1501-v15.09.15'


@pytest.fixture(scope='session')
def msinet_weights(tmp_path_factory) -> Path:
    """A state_dict of randomly initialised MSINet (``helpers.random_checkpoint``)."""
    return random_checkpoint(tmp_path_factory.mktemp('checkpoint') / 'msinet.pth')


@pytest.fixture
def unique_name():
    """A model name nobody has registered yet."""
    return lambda: f'msinet_test_{uuid.uuid4().hex[:8]}'


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty torch hub cache, and no MSINET_PRETRAINED from the environment."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / 'hub'))
    yield tmp_path / 'hub'
    torch.hub.set_dir(previous)


@pytest.fixture
def imagenet_checkpoint(tmp_path) -> Path:
    """A checkpoint in the layout the authors published: 1000-class classifiers,
    extra entries beside the state_dict (a numpy scalar among them)."""
    model = MSINet(1000, 'msinet')
    model.load_state_dict(deterministic_state_dict(model))
    path = tmp_path / 'published' / MSINET_IMAGENET.filename
    path.parent.mkdir()
    torch.save({'state_dict': model.state_dict(), 'epoch': 90, 'best_acc': np.float64(0.71)},
               path)
    return path


@pytest.fixture(scope='session')
def seed() -> int:
    """The seed a learning test draws its data and weights from (``MSINET_TEST_SEED``, 0
    by default): a learned outcome must hold whichever it is."""
    return SEED


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(SEED)


def pytest_report_header(config):
    return f'msinet-reid {msinet_reid.__version__}, torch {torch.__version__}'


def pytest_configure(config):
    """Under pytest-xdist (``-n``), each worker process gets its share of the cores:
    torch's threads, and those of the processes the tests start (OMP_NUM_THREADS). More
    threads than cores cost more in waiting than the parallel tests gain."""
    workers = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))
    if workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ['OMP_NUM_THREADS'] = str(threads)
        torch.set_num_threads(threads)
