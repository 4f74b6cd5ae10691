"""Compiled inference on the CPU: msinet_reid.deploy.compile_model, `--compile` of the
commands and of boxmot's appearance model. tests/test_cuda.py checks the CUDA graphs.

Compiling MSINet takes 5-30 s per bucket on 2 cores: the tests compile small images
(64x32) for few buckets, once per module where they can.
"""
import random

import numpy as np
import pytest
import torch
from torch import nn

import msinet_reid
from msinet_reid.cli import main
from msinet_reid.deploy import (CompiledModel, CompileError, InferenceModel, bucket_sizes,
                                compile_model)
from torchreid import models

from helpers import engine_checkpoint

HEIGHT, WIDTH = 64, 32
MAX_BATCH = 8


def msinet(seed: int) -> msinet_reid.MSINet:
    torch.manual_seed(seed)
    return models.build_model('msinet', 10, pretrained=False).eval()


@pytest.fixture(scope='module')
def eager():
    return msinet(0)


@pytest.fixture(scope='module')
def compiled(eager):
    return compile_model(eager, image_size=(HEIGHT, WIDTH), max_batch_size=MAX_BATCH,
                         progress=False)


def features(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(images)


def test_bucket_sizes_are_powers_of_two_up_to_the_maximum():
    assert bucket_sizes(128) == (1, 2, 4, 8, 16, 32, 64, 128)
    assert bucket_sizes(48) == (1, 2, 4, 8, 16, 32, 48)
    assert bucket_sizes(1) == (1,)
    with pytest.raises(ValueError, match='at least 1'):
        bucket_sizes(0)


@pytest.mark.slow
@pytest.mark.numerics
@pytest.mark.parametrize('batch', [1, 3, 8, 13, 32, 129])
def test_features_equal_the_eager_model(compiled, eager, batch):
    """Padded up to a bucket (3 -> 4), or run in chunks of the largest (13 -> 8 + 8)."""
    images = torch.randn(batch, 3, HEIGHT, WIDTH)
    out = compiled(images)
    assert out.shape == (batch, 768) and out.dtype == torch.float32
    assert (out - features(eager, images)).abs().max() < 1e-4


@pytest.mark.slow
def test_any_batch_size_runs_without_recompiling(compiled, eager):
    """Everything was compiled at construction: 40 calls of any size, up to four times
    the largest bucket, compile nothing, whatever grad mode, inference mode or autocast the
    caller is in."""
    rng = random.Random(0)
    contexts = [torch.enable_grad, torch.no_grad, torch.inference_mode,
                lambda: torch.autocast('cpu', dtype=torch.bfloat16)]
    with torch._dynamo.config.patch(error_on_recompile=True):
        for call in range(40):
            images = torch.randn(rng.randint(1, 4 * MAX_BATCH), 3, HEIGHT, WIDTH,
                                 requires_grad=call % 5 == 0)
            with contexts[call % len(contexts)]():
                out = compiled(images)
            assert out.shape == (len(images), 768)
            if call % 10 == 0:
                assert (out - features(eager, images.detach())).abs().max() < 1e-4


@pytest.mark.slow
def test_outputs_belong_to_the_caller(compiled):
    first_images = torch.randn(3, 3, HEIGHT, WIDTH)
    first = compiled(first_images)
    kept = first.clone()
    for batch in (3, 4, 2, 3):  # the same bucket, and others
        compiled(torch.randn(batch, 3, HEIGHT, WIDTH))
    assert torch.equal(first, kept)
    first += 1  # a normal tensor, free to change (not an inference tensor)
    assert torch.allclose(compiled(first_images), kept, atol=1e-6)


@pytest.mark.slow
def test_wrong_inputs_say_what_to_do(compiled):
    with pytest.raises(ValueError, match=r'compiled for 64x32 images; got 128x64.*'
                                         r'image_size=\(128, 64\)'):
        compiled(torch.randn(2, 3, 128, 64))
    with pytest.raises(ValueError, match=r'\(batch, 3, height, width\)'):
        compiled(torch.randn(2, 1, HEIGHT, WIDTH))
    with pytest.raises(RuntimeError, match='cannot be trained'):
        compiled.train()
    assert compiled.eval() is compiled and compiled.to('cpu') is compiled
    assert list(compiled.parameters()) == []
    assert compiled(torch.randn(0, 3, HEIGHT, WIDTH)).shape == (0, 768)


@pytest.mark.slow
def test_each_model_keeps_its_own_weights(eager):
    """A second MSINet of the same shapes (inductor's cache may serve its kernels) still
    computes its own features, and an InferenceModel compiles as its MSINet does, here
    on NCHW tensors."""
    other = msinet(1)
    compiled = compile_model(InferenceModel(other), image_size=(HEIGHT, WIDTH),
                             buckets=[4], channels_last=False, progress=False)
    assert compiled._inputs[4].is_contiguous()
    images = torch.randn(4, 3, HEIGHT, WIDTH)
    out = compiled(images)
    assert (out - features(other, images)).abs().max() < 1e-4
    assert (out - features(eager, images)).abs().max() > 1e-2


@pytest.mark.slow
def test_bfloat16_features_stay_close_to_float32(eager):
    compiled = compile_model(eager, image_size=(HEIGHT, WIDTH), buckets=[4],
                             dtype=torch.bfloat16, progress=False)
    images = torch.randn(4, 3, HEIGHT, WIDTH)
    out = compiled(images)
    assert out.dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity(out, features(eager, images))
    assert cosine.min() > 0.99


@pytest.mark.slow
def test_any_torchreid_model_compiles():
    """ResNet-18 as torchreid builds it (its BatchNorms are not in Sequentials with their
    convolutions: inductor fuses them)."""
    torch.manual_seed(0)
    model = models.build_model('resnet18', 10, pretrained=False).eval()
    compiled = compile_model(model, image_size=(HEIGHT, WIDTH), max_batch_size=2,
                             progress=False)
    assert compiled.buckets == (1, 2) and compiled.feature_dim == 512
    images = torch.randn(3, 3, HEIGHT, WIDTH)
    assert (compiled(images) - features(model, images)).abs().max() < 1e-4


class GraphBreak(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, images):
        torch._dynamo.graph_break()  # what a data-dependent Python branch would force
        return self.conv(images).mean((2, 3))


def test_a_compile_failure_names_its_cause():
    with pytest.raises(CompileError, match=r'could not compile GraphBreak for batches of 1 '
                                           r'on cpu: .*graph_break'):
        compile_model(GraphBreak(), image_size=(8, 8), max_batch_size=2, progress=False)
    with pytest.raises(ValueError, match='dtype'):
        compile_model(GraphBreak(), image_size=(8, 8), dtype=torch.float64)


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    return engine_checkpoint(tmp_path_factory.mktemp('compiled'))


@pytest.mark.slow
def test_extract_and_evaluate_take_compile(checkpoint, tiny_market, tmp_path, capsys):
    root = tiny_market()
    query = root / 'market1501' / 'Market-1501-v15.09.15' / 'query'
    common = ['--weights', str(checkpoint), '--height', str(HEIGHT), '--width', str(WIDTH),
              '--batch-size', '4', '--workers', '0']
    for flags, out in (([], tmp_path / 'eager.npy'), (['--compile'], tmp_path / 'fast.npy')):
        assert main(['extract', *common, *flags, '--images', str(query), '--out',
                     str(out)]) == 0
    expected, fast = np.load(tmp_path / 'eager.npy'), np.load(tmp_path / 'fast.npy')
    assert fast.shape == expected.shape and len(expected) % 4  # a padded last batch
    np.testing.assert_allclose(fast, expected, rtol=0, atol=1e-4)
    capsys.readouterr()
    for flags in ([], ['--compile']):
        assert main(['evaluate', *common, *flags, '--root', str(root)]) == 0
    eager_line, compiled_line = [line for line in capsys.readouterr().out.splitlines()
                                 if 'Rank-1' in line]
    assert eager_line == compiled_line


def test_compile_refuses_onnx_files(tmp_path, capsys):
    onnx_file = tmp_path / 'msinet.onnx'
    onnx_file.write_bytes(b'')
    with pytest.raises(SystemExit):
        main(['evaluate', '--weights', str(onnx_file), '--root', str(tmp_path), '--compile'])
    assert '--compile compiles PyTorch checkpoints' in capsys.readouterr().err


@pytest.mark.slow
def test_boxmot_compiled_appearance_model_takes_every_frame_size(checkpoint, tmp_path):
    """boxmot's PyTorch backend with the compiled model: frames of 1 to 60 detections
    never recompile, and the features are the eager backend's."""
    pytest.importorskip('boxmot', reason='boxmot is not installed: pip install '
                                         '"msinet-reid[boxmot]"')
    import msinet_reid.integrations.boxmot as msinet_boxmot
    from test_boxmot import boxmot_inputs

    weights = msinet_boxmot.prepare_weights('msinet', checkpoint, tmp_path / 'msinet.pt',
                                            (HEIGHT, WIDTH))
    eager = msinet_boxmot.reid_encoder(weights)
    fast = msinet_boxmot.reid_encoder(weights, compile=True, batch_size=MAX_BATCH)
    backend = fast._runtime
    assert isinstance(backend.model, CompiledModel)
    assert backend.model.buckets == bucket_sizes(MAX_BATCH)  # boxmot's batches of crops
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for count in (1, 60, 7, 33, 2):
            corners = rng.uniform(0, 200, size=(count, 2))
            boxes = np.concatenate([corners, corners + rng.uniform(16, 40, (count, 2))], 1)
            frame, detections, *_ = boxmot_inputs(image, boxes.astype(np.float32))
            (expected,) = eager.encode([frame], [detections])
            (got,) = fast.encode([frame], [detections])
            assert got.shape == (count, 768)
            torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    onnx_path = msinet_boxmot.export(weights, include=('onnx',))['onnx']
    with pytest.raises(ValueError, match='compiles PyTorch weights'):
        msinet_boxmot.reid_encoder(onnx_path, compile=True)
