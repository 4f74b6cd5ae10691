"""The CUDA paths: mixed precision with its scaler state in checkpoints, a chosen device
index, inference and ONNX parity on the GPU, compiled inference with CUDA graphs, and NCCL
under torchrun.

Every test here needs a CUDA device and is skipped, with that reason, without one.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import msinet_reid  # noqa: F401
from msinet_reid.deploy import InferenceModel
from msinet_reid.engine import ImageMSINetEngine, TCMSearchEngine, build_search_optimizers
from msinet_reid.search import MSINetSupernet
from torchreid import data as reid_data
from torchreid import models as reid_models

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason='needs a CUDA device; none is visible to torch')

REPO = Path(__file__).resolve().parents[1]


def last_device() -> torch.device:
    """The highest-numbered GPU: ``cuda:1`` and beyond catch code that assumes device 0."""
    return torch.device('cuda', torch.cuda.device_count() - 1)


@pytest.fixture(scope='module')
def manager(tiny_market):
    return reid_data.ImageDataManager(
        root=str(tiny_market()), sources='market1501', height=64, width=32, transforms=None,
        batch_size_train=8, num_instances=2, train_sampler='RandomIdentitySampler',
        workers=0, batch_size_test=16)


def build(manager, name='msinet_sam', device=None):
    model = reid_models.build_model(name, manager.num_train_pids, loss='triplet',
                                    pretrained=False)
    return model.to(device or last_device())


def test_amp_trains_and_resumes_with_the_scaler_state(manager, tmp_path):
    model = build(manager)
    engine = ImageMSINetEngine(manager, model, torch.optim.SGD(model.parameters(), lr=0.01),
                               amp=True)
    before = [p.detach().clone() for p in model.parameters()]
    engine.run(save_dir=str(tmp_path), max_epoch=1, print_freq=100)
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    checkpoint = tmp_path / 'model' / 'model.pth.tar-1'
    saved = torch.load(checkpoint, weights_only=True)['scaler']
    assert saved['scale'] == engine.scaler.get_scale()

    resumed_model = build(manager)
    resumed = ImageMSINetEngine(manager, resumed_model,
                                torch.optim.SGD(resumed_model.parameters(), lr=0.01), amp=True)
    assert resumed.resume(checkpoint) == 1
    assert resumed.scaler.get_scale() == engine.scaler.get_scale()
    assert resumed.scaler.state_dict()['_growth_tracker'] == saved['_growth_tracker']


def test_the_training_engine_stays_on_the_chosen_device(manager, tmp_path):
    model = build(manager)
    engine = ImageMSINetEngine(manager, model, torch.optim.SGD(model.parameters(), lr=0.01))
    assert engine.device == last_device()
    engine.run(save_dir=str(tmp_path), max_epoch=1, print_freq=100)  # trains and evaluates
    assert all(p.device == last_device() for p in model.parameters())


def test_the_search_engine_stays_on_the_chosen_device(manager, tmp_path):
    model = MSINetSupernet(manager.num_train_pids).to(last_device())
    search = TCMSearchEngine(manager, model, *build_search_optimizers(model, max_epoch=1))
    search.run(save_dir=str(tmp_path), max_epoch=1, print_freq=100)
    assert all(m.features.device == last_device() for m in search.memories.values())


def test_inference_model_and_onnx_match_on_the_gpu(manager, tmp_path):
    pytest.importorskip('onnxruntime', reason='needs the onnx extra: pip install -e ".[onnx]"')
    from msinet_reid.deploy.onnx_export import check_onnx, export_onnx

    model = build(manager, 'msinet').eval()
    images = torch.randn(4, 3, 64, 32, device=last_device())
    with torch.no_grad():
        expected = model(images)
        torch.testing.assert_close(InferenceModel(model)(images), expected,
                                   rtol=1e-3, atol=1e-3 * expected.abs().max().item())
    path = export_onnx(model, tmp_path / 'msinet.onnx', height=64, width=32)
    check_onnx(path, model.cpu(), images.cpu())


def test_torchrun_trains_on_every_gpu_with_nccl(tiny_market, tmp_path):
    # One process per GPU, up to two: with two, DDP and the gathers run over NCCL.
    processes = min(2, torch.cuda.device_count())
    data_root = tiny_market()
    result = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--standalone',
         f'--nproc_per_node={processes}', str(REPO / 'examples' / 'train_msinet.py'),
         '--root', str(data_root), '--source', 'market1501', '--device', 'cuda',
         '--epochs', '1', '--batch-size', '8', '--num-instances', '2', '--height', '64',
         '--width', '32', '--workers', '0', '--save-dir', str(tmp_path / 'log'), '--amp'],
        capture_output=True, text=True, timeout=600, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / 'log' / 'model' / 'model.pth.tar-1').exists()


@pytest.mark.parametrize('rerank', [False, True])
def test_ranking_on_the_gpu_equals_the_cpu(rerank):
    """rank_metrics runs on the features' device: in float64, the GPU's figures are the
    CPU's (and so torchreid's, tests/test_retrieval.py)."""
    from msinet_reid.retrieval import rank_metrics
    from test_retrieval import identities

    (qf, *query), (gf, *gallery) = identities(80, 600, seed=2, distractors=60)
    labels = (query[0], gallery[0], query[1], gallery[1])
    cpu = rank_metrics(qf, gf, *labels, rerank=rerank, budget=2 ** 18)
    gpu = rank_metrics(qf.to(last_device()), gf.to(last_device()), *labels, rerank=rerank,
                       budget=2 ** 18)
    np.testing.assert_allclose(gpu['cmc'], cpu['cmc'], rtol=0, atol=1e-9)
    assert gpu['mAP'] == pytest.approx(cpu['mAP'], abs=1e-9)
    assert gpu['mINP'] == pytest.approx(cpu['mINP'], abs=1e-9)


def test_clustering_on_the_gpu_equals_the_cpu():
    from msinet_reid.unsupervised import cluster_pseudo_labels

    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(40, 64, generator=generator)
    features = centres.repeat_interleave(8, 0) + 0.3 * torch.randn(320, 64, generator=generator)
    cpu = cluster_pseudo_labels(features, k1=10, k2=3)
    gpu = cluster_pseudo_labels(features.to(last_device()), k1=10, k2=3)
    np.testing.assert_array_equal(gpu, cpu)
    assert cpu.max() >= 30


@pytest.mark.parametrize('dtype, buckets', [(torch.float32, (1, 2, 4)),
                                            (torch.bfloat16, (4,))])
def test_compiled_model_replays_cuda_graphs(dtype, buckets):
    """compile_model on the GPU: one CUDA graph per bucket, captured at construction; any
    batch size replays one (no recompilation), and a replay never overwrites the
    features an earlier call returned."""
    import random

    from msinet_reid.deploy import compile_model

    torch.manual_seed(0)
    model = reid_models.build_model('msinet', 10, pretrained=False).eval().to(last_device())
    compiled = compile_model(model, last_device(), image_size=(64, 32), buckets=buckets,
                             dtype=dtype, progress=False)
    assert set(compiled._graphs) == set(buckets)
    first_images = torch.randn(3, 3, 64, 32, device=last_device())
    first = compiled(first_images)
    kept = first.clone()
    rng = random.Random(0)
    with torch._dynamo.config.patch(error_on_recompile=True), torch.no_grad():
        for call in range(50):
            images = torch.randn(rng.randint(1, 20), 3, 64, 32, device=last_device())
            out = compiled(images)
            expected = model(images)
            assert out.shape == expected.shape and out.dtype == torch.float32
            cosine = torch.nn.functional.cosine_similarity(out, expected)
            assert cosine.min() > (0.9999 if dtype == torch.float32 else 0.99), call
    torch.testing.assert_close(first, kept, rtol=0, atol=0)
    if dtype == torch.float32:  # TF32 convolutions, as the eager model runs them
        with torch.no_grad():
            expected = model(first_images)
        torch.testing.assert_close(first, expected, rtol=1e-3,
                                   atol=1e-3 * expected.abs().max().item())
