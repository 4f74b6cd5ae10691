"""Unsupervised training pieces: Jaccard distance, DBSCAN pseudo labels, cluster memory,
the Cluster Contrast engine, and the example for one tiny round on generated data."""
import importlib.util
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import msinet_reid  # noqa: F401
from msinet_reid.data import make_market1501
from msinet_reid.models import MSINetEncoder
from msinet_reid.unsupervised import (
    ClusterContrastEngine, ClusterMemory, cluster_pseudo_labels, jaccard_distance,
)
from torchreid import data, optim

EXAMPLE = Path(__file__).resolve().parents[1] / 'examples' / 'cluster_contrast.py'
DEMO = dict(num_train_ids=8, num_test_ids=4, num_cameras=3, height=64, width=32)


def blobs(groups=3, size=6, dim=16, noise=0.05):
    """``groups`` tight groups of ``size`` features around orthogonal directions."""
    centres = torch.eye(dim)[:groups]
    features = centres.repeat_interleave(size, 0) + noise * torch.randn(groups * size, dim)
    return features, torch.arange(groups).repeat_interleave(size)


def test_jaccard_distance_by_hand():
    """k1 = k2 = 1: each point's encoding is itself and its mutual nearest neighbour,
    weighted by exp(-squared distance)."""
    angles = torch.tensor([0., 10., 90., 100.]) * math.pi / 180
    features = torch.stack((angles.cos(), angles.sin()), 1)
    distance = jaccard_distance(features, k1=1, k2=1)
    near = math.exp(-(2 - 2 * math.cos(math.pi / 18)))
    shared = 2 * near / (1 + near)  # sum of min over the two encodings
    expected = torch.tensor([[0, 1 - shared / (2 - shared), 1, 1],
                             [1 - shared / (2 - shared), 0, 1, 1],
                             [1, 1, 0, 1 - shared / (2 - shared)],
                             [1, 1, 1 - shared / (2 - shared), 0]])
    torch.testing.assert_close(torch.from_numpy(distance), expected.float(), atol=1e-5, rtol=0)


def test_jaccard_distance_separates_groups():
    features, groups = blobs()
    distance = torch.from_numpy(jaccard_distance(features, k1=5, k2=3))
    same = groups[:, None] == groups[None]
    assert distance.shape == (18, 18)
    torch.testing.assert_close(distance, distance.t())
    assert distance.diagonal().abs().max() < 1e-6 and distance.min() >= 0
    assert distance[same].max() < 0.6 and (distance[~same] == 1).all()


def test_pseudo_labels_recover_groups_and_leave_outliers_out():
    features, groups = blobs()
    features = torch.cat((features, torch.full((1, 16), 0.25)))  # far from every group
    labels = cluster_pseudo_labels(features, eps=0.6, min_samples=4, k1=5, k2=3)
    assert labels[-1] == -1
    found = torch.from_numpy(labels[:-1])
    assert len(set(labels[:-1])) == 3 and (found >= 0).all()
    assert ((found[:, None] == found[None]) == (groups[:, None] == groups[None])).all()


def test_cluster_memory_loss_gradient_and_momentum():
    centroids = torch.randn(3, 8)
    memory = ClusterMemory(centroids * 5, temperature=0.1, momentum=0.25)
    torch.testing.assert_close(memory.centroids, F.normalize(centroids, dim=1))
    start = memory.centroids.clone()
    features = torch.randn(4, 8, requires_grad=True)
    labels = torch.tensor([0, 0, 2, 2])
    loss = memory(features, labels)
    logits = F.normalize(features, dim=1) @ start.t() / 0.1
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels))
    loss.backward()
    assert features.grad is not None and not memory.centroids.requires_grad

    unit = F.normalize(features.detach(), dim=1)
    for label in (0, 2):
        mean = unit[labels == label].mean(0)
        expected = F.normalize(0.25 * start[label] + 0.75 * mean, dim=0)
        torch.testing.assert_close(memory.centroids[label], expected)
    torch.testing.assert_close(memory.centroids[1], start[1])  # not in the batch
    trained = memory.centroids.clone()
    memory.eval()(features, labels)
    assert torch.equal(memory.centroids, trained)  # no update in eval mode


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('cluster_contrast')
    make_market1501(root, progress=False, **DEMO)
    return root


def test_engine_refuses_too_few_clusters(demo_root):
    datamanager = data.ImageDataManager(
        root=str(demo_root), sources='market1501', height=64, width=32, batch_size_train=8,
        num_instances=4, train_sampler='RandomIdentitySampler', workers=0, use_gpu=False)
    model = MSINetEncoder(pretrained=False, norm=True)
    engine = ClusterContrastEngine(datamanager, model, optim.build_optimizer(model),
                                   use_gpu=False, min_samples=100, k1=10)
    with pytest.raises(RuntimeError, match='DBSCAN found 0 clusters, but a batch of 8 needs 2'):
        engine.recluster()


def test_cluster_contrast_example_one_round(demo_root, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location('cluster_contrast', EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    results = example.main([
        '--demo', '--root', str(demo_root), '--demo-ids', '8', '4', '--demo-cameras', '3',
        '--height', '64', '--width', '32', '--epochs', '1', '--batch-size', '8',
        '--k1', '10', '--workers', '0', '--print-freq', '1', '--log-dir', str(tmp_path),
    ])
    out = capsys.readouterr().out
    assert '=> Clustering: ' in out and 'epoch: [1/1][1/' in out
    for state in ('untrained', 'trained'):
        assert 0 <= results[state]['mAP'] <= 1
        assert f'{results[state]["mAP"]:.1%}' in out.split(state)[-1].splitlines()[0]
    assert list(tmp_path.glob('model/model.pth.tar-1'))
    with capsys.disabled():
        print(f"\ncluster contrast, one round on generated data: mAP "
              f"{results['untrained']['mAP']:.1%} -> {results['trained']['mAP']:.1%}")
