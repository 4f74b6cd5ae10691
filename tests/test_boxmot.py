"""MSINet inside boxmot: registry, weights, backends, boxmot's CLI and a real tracker.

Nothing here downloads: every weights file is written by the tests, and the tests that
would make boxmot pip-install a runtime at run time skip, saying so, instead.
"""
import importlib
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchreid
from PIL import Image

import msinet_reid
from msinet_reid import cli
from msinet_reid.data.tracking import make_mot_sequence, read_mot
from msinet_reid.deploy import InferenceModel, load_trained
from msinet_reid.deploy import MIN_COSINE, OnnxModel, export_model

from helpers import engine_checkpoint, load_script, random_checkpoint

HEIGHT, WIDTH = 64, 32
INSTALL = 'pip install "msinet-reid[boxmot]"'


@pytest.mark.slow
def test_import_msinet_reid_does_not_need_boxmot():
    code = 'import sys, msinet_reid, msinet_reid.integrations; print("boxmot" in sys.modules)'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == 'False'


def test_missing_boxmot_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, 'boxmot', None)  # what an absent package looks like
    monkeypatch.delitem(sys.modules, 'msinet_reid.integrations.boxmot', raising=False)
    with pytest.raises(ImportError, match=INSTALL.replace('[', r'\[').replace(']', r'\]')):
        importlib.import_module('msinet_reid.integrations.boxmot')


boxmot = pytest.importorskip('boxmot', reason=f'boxmot is not installed: {INSTALL}')
msinet_boxmot = importlib.import_module('msinet_reid.integrations.boxmot')
from boxmot.reid.backbones.registry import build_backbone, get_backbone_spec  # noqa: E402
from boxmot.reid.core import ReID  # noqa: E402
from boxmot.structures import Boxes, Detections, Frame  # noqa: E402
from boxmot.utils.checks import requirement_satisfied  # noqa: E402


def runtime_installed(backend: str):
    """Skip when boxmot would pip-install this backend's runtime at run time."""
    from boxmot.reid.backends.dependencies import reid_backend_requirements

    missing = [r for r in reid_backend_requirements(backend, device='cpu')
               if not requirement_satisfied(r)]
    if missing:
        pytest.skip(f'boxmot would pip-install {missing} for its {backend} backend at run time; '
                    f'install the pins of requirements.txt')


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """A checkpoint as torchreid's engines write it, numpy rank1 included."""
    return engine_checkpoint(tmp_path_factory.mktemp('checkpoint'))


@pytest.fixture(scope='module')
def weights(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp('boxmot') / 'street_cam.pt'  # no model name needed in it
    return msinet_boxmot.prepare_weights('msinet', checkpoint, out, (HEIGHT, WIDTH))


def test_every_msinet_model_is_a_boxmot_backbone(unique_name):
    for name in msinet_reid.list_models():
        assert get_backbone_spec(name).default_img_size == (256, 128)
    name = unique_name()  # a genotype registered after the import reaches boxmot too
    msinet_reid.register_genotype(name, msinet_reid.GENOTYPES['msinet_vr'])
    model = build_backbone(name, num_classes=3, pretrained=False)
    assert isinstance(model, msinet_reid.MSINet)
    assert model.genotype == msinet_reid.GENOTYPES['msinet_vr']  # that model, not another
    assert model.classifier.out_features == 3
    assert name in msinet_boxmot.register_backbones()  # registering again is harmless


def test_prepare_weights_refuses_what_boxmot_cannot_read(checkpoint, tmp_path):
    with pytest.raises(ValueError, match=r'\.pt'):
        msinet_boxmot.prepare_weights('msinet', checkpoint, tmp_path / 'msinet.pth')
    with pytest.raises(ValueError, match='multiples of 16'):
        msinet_boxmot.prepare_weights('msinet', checkpoint, tmp_path / 'm.pt', (100, 50))
    with pytest.raises(msinet_reid.PretrainedWeightsError, match='msinet_vr'):
        msinet_boxmot.prepare_weights('msinet_vr', checkpoint, tmp_path / 'm.pt')
    assert not list(tmp_path.iterdir())


def boxmot_inputs(rgb: np.ndarray, boxes: np.ndarray):
    """boxmot's Frame of an RGB image and its Detections of ``x1 y1 x2 y2`` boxes; the
    image in BGR, as trackers take it."""
    frame = Frame(image=torch.from_numpy(rgb).permute(2, 0, 1).contiguous(), sample_id='f1')
    detections = Detections(geometry=Boxes(torch.from_numpy(boxes)),
                            scores=torch.full((len(boxes),), 0.9),
                            class_ids=torch.zeros(len(boxes), dtype=torch.long), sample_id='f1')
    return frame, detections, rgb[..., ::-1].copy(), boxes


def frame_and_detections():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(120, 200, 3), dtype=np.uint8)  # RGB
    boxes = np.array([[5, 10, 45, 100], [60, 0, 110, 119], [150.5, 30.2, 199, 90]], np.float32)
    return boxmot_inputs(image, boxes)


def street_persons(folder):
    """The first frame of the synthetic street sequence, and its persons' detections."""
    sequence = make_mot_sequence(folder, num_frames=1, progress=False)
    rgb = np.array(Image.open(sequence / 'img1' / '000001.jpg').convert('RGB'))
    x, y, w, h = read_mot(sequence / 'det' / 'det.txt')[:, 2:6].T
    return boxmot_inputs(rgb, np.stack([x, y, x + w, y + h], axis=1).astype(np.float32))


@pytest.mark.slow
def test_features_equal_the_inference_model_on_every_backend(weights, checkpoint):
    frame, detections, bgr, boxes = frame_and_detections()
    runtime_installed('onnx')
    runtime_installed('openvino')
    files = {'pytorch': weights, **msinet_boxmot.export(weights)}
    assert sorted(files) == ['onnx', 'openvino', 'pytorch', 'torchscript']
    # the crops as boxmot preprocesses them, through MSINet's inference model
    crops = ReID(weights=weights).model.get_crops(boxes, bgr)
    assert crops.shape == (3, 3, HEIGHT, WIDTH)
    with torch.no_grad():
        expected = InferenceModel(load_trained('msinet', checkpoint))(crops)
    expected = torch.nn.functional.normalize(expected, dim=1)
    for backend, path in files.items():
        encoder = msinet_boxmot.reid_encoder(path)
        assert encoder.spec.backend == backend and encoder.embedding_dim == 768
        (features,) = encoder.encode([frame], [detections])
        torch.testing.assert_close(features, expected, atol=1e-4, rtol=0, msg=backend)


@pytest.mark.slow
def test_msinet_reid_exports_run_in_boxmot_by_suffix(weights, checkpoint, tmp_path):
    """`msinet-reid export --format openvino|torchscript` files, without boxmot's metadata:
    .xml on boxmot's openvino backend, a TorchScript .pt on its torchscript backend."""
    runtime_installed('openvino')
    frame, detections, bgr, boxes = frame_and_detections()
    model = load_trained('msinet', checkpoint)
    crops = ReID(weights=weights).model.get_crops(boxes, bgr)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(InferenceModel(model)(crops), dim=1)
    for backend, name in (('openvino', 'msinet.xml'), ('torchscript', 'msinet.pt')):
        path = export_model(model, tmp_path / name, backend, HEIGHT, WIDTH)
        encoder = msinet_boxmot.reid_encoder(path)
        assert encoder.spec.backend == backend and encoder.embedding_dim == 768
        (features,) = encoder.encode([frame], [detections])
        torch.testing.assert_close(features, expected, atol=1e-4, rtol=0, msg=backend)


@pytest.mark.slow
def test_boxmot_cli_exports_msinet(checkpoint, tmp_path):
    """boxmot's own export command, through the launcher that registers MSINet (at
    boxmot's default crop size: its TorchScript export keeps no other)."""
    weights = msinet_boxmot.prepare_weights('msinet', checkpoint, tmp_path / 'msinet_cam.pt')
    target = tmp_path / 'export' / weights.name
    target.parent.mkdir()
    target.write_bytes(weights.read_bytes())
    result = subprocess.run(
        [sys.executable, '-m', 'msinet_reid.integrations.boxmot', 'export', '--weights',
         str(target), '--include', 'torchscript'], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    encoder = msinet_boxmot.reid_encoder(target.with_suffix('.torchscript'))
    frame, detections, _, _ = frame_and_detections()
    (features,) = encoder.encode([frame], [detections])
    (expected,) = msinet_boxmot.reid_encoder(weights).encode([frame], [detections])
    torch.testing.assert_close(features, expected, atol=1e-4, rtol=0)


def blind_rtdetr(folder):
    """A snapshot folder for boxmot's rtdetr detector backend, written here: a tiny,
    randomly initialised RT-DETR v2 whose processor scales every pixel to 0, so it sees a
    blank image and reports the same five confident boxes on every frame."""
    transformers = pytest.importorskip(
        'transformers', reason='boxmot track runs offline with its rtdetr detector, which '
        'needs transformers (extra test)')
    torch.manual_seed(0)
    backbone = transformers.RTDetrResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1],
        layer_type='basic', out_features=['stage2', 'stage3', 'stage4'])
    config = transformers.RTDetrV2Config(
        backbone_config=backbone, encoder_in_channels=[16, 32, 64], encoder_hidden_dim=16,
        encoder_ffn_dim=32, encoder_attention_heads=2, d_model=16, decoder_in_channels=[16] * 3,
        decoder_ffn_dim=32, decoder_layers=2, decoder_attention_heads=2, num_queries=5,
        num_denoising=0, id2label={0: 'person'}, initializer_bias_prior_prob=0.99)
    folder = folder / 'rtdetr_blind'  # boxmot picks its detector backend by name
    transformers.RTDetrV2ForObjectDetection(config).save_pretrained(folder)
    transformers.RTDetrImageProcessor(size={'height': 64, 'width': 64}, rescale_factor=0.0
                                      ).save_pretrained(folder)
    return folder


@pytest.fixture(scope='module')
def int8_export(tiny_market, tmp_path_factory):
    """``msinet-reid export --int8`` of randomly initialised MSINet, calibrated on synthetic
    persons: the fp32 and the int8 ONNX file, neither with boxmot's metadata."""
    folder = tmp_path_factory.mktemp('int8')
    crops = tiny_market(height=HEIGHT, width=WIDTH) / 'market1501' / 'Market-1501-v15.09.15'
    assert cli.main(['export', '--weights', str(random_checkpoint(folder / 'msinet.pth')),
                     '--out', str(folder / 'msinet.onnx'), '--height', str(HEIGHT),
                     '--width', str(WIDTH), '--int8', '--calib', str(crops / 'bounding_box_train'),
                     '--num-calibration', '16']) == 0
    return folder / 'msinet.onnx', folder / 'msinet.int8.onnx'


def assert_ranks_like(features: torch.Tensor, reference: torch.Tensor, record_property) -> None:
    """Each crop's features are within MIN_COSINE of its reference features, and nearer to
    them than to any other crop's: int8 tells the crops apart as fp32 does."""
    similarity = (torch.nn.functional.normalize(features, dim=1)
                  @ torch.nn.functional.normalize(reference, dim=1).T)
    record_property('min cosine to its own fp32 crop', similarity.diagonal().min().item())
    record_property('max cosine to another crop',
                    (similarity - 2 * torch.eye(len(similarity))).max().item())
    assert similarity.diagonal().min() >= MIN_COSINE
    assert (similarity.argmax(dim=1) == torch.arange(len(similarity))).all()


@pytest.mark.numerics
def test_int8_onnx_runs_in_boxmot(int8_export, tmp_path, record_property):
    fp32_path, int8_path = int8_export
    runtime_installed('onnx')
    frame, detections, _, boxes = street_persons(tmp_path)
    assert len(boxes) >= 4
    encoder = msinet_boxmot.reid_encoder(int8_path)
    assert encoder.spec.backend == 'onnx' and encoder.embedding_dim == 768
    (int8,) = encoder.encode([frame], [detections])
    (fp32,) = msinet_boxmot.reid_encoder(fp32_path).encode([frame], [detections])
    assert_ranks_like(int8, fp32, record_property)


@pytest.mark.numerics
def test_int8_onnx_runs_in_openvino_in_int8(int8_export, tmp_path, record_property):
    openvino = pytest.importorskip('openvino', reason=f'OpenVINO comes with {INSTALL}')
    fp32_path, int8_path = int8_export
    _, _, bgr, boxes = street_persons(tmp_path)
    crops = ReID(weights=fp32_path).model.get_crops(boxes, bgr)  # boxmot's preprocessing
    compiled = openvino.Core().compile_model(str(int8_path), 'CPU')
    int8 = torch.from_numpy(compiled(crops.numpy())[0])
    assert_ranks_like(int8, OnnxModel(fp32_path)(crops), record_property)
    convolutions = [op.get_rt_info() for op in compiled.get_runtime_model().get_ordered_ops()
                    if op.get_rt_info()['layerType'].astype(str) == 'Convolution']
    assert convolutions
    assert {info['runtimePrecision'].astype(str) for info in convolutions} == {'u8'}


# The launcher run as `python -m`, each MSINet forward pass reported on stderr.
SPIED_LAUNCHER = """
import runpy, sys, msinet_reid
forward = msinet_reid.MSINet.forward
def spy(model, images, *args, **kwargs):
    print('MSINet embeds', tuple(images.shape), file=sys.stderr)
    return forward(model, images, *args, **kwargs)
msinet_reid.MSINet.forward = spy
runpy.run_module('msinet_reid.integrations.boxmot', run_name='__main__', alter_sys=True)
"""


@pytest.mark.slow
def test_boxmot_track_command_tracks_with_msinet(tmp_path):
    """``boxmot track`` through the launcher, offline: a local detector snapshot, MSINet
    weights from prepare_weights, the synthetic sequence; MSINet embeds every frame's boxes.
    The launcher runs in a process of its own, where nothing but it registers MSINet."""
    detector = blind_rtdetr(tmp_path)
    weights = msinet_boxmot.prepare_weights(
        'msinet', random_checkpoint(tmp_path / 'msinet.pth'), tmp_path / 'msinet_cam.pt',
        (HEIGHT, WIDTH))
    frames = 8
    sequence = make_mot_sequence(tmp_path, num_people=4, num_frames=frames, progress=False)
    result = subprocess.run(
        [sys.executable, '-c', SPIED_LAUNCHER, 'track', '--detector', str(detector),
         '--reid', str(weights), '--tracker', 'botsort', '--source', str(sequence / 'img1'),
         '--save-txt', '--project', str(tmp_path / 'runs')],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    embedded = [line for line in result.stderr.splitlines() if line.startswith('MSINet embeds')]
    assert embedded == [f'MSINet embeds (5, 3, {HEIGHT}, {WIDTH})'] * frames
    (tracks_file,) = (tmp_path / 'runs').glob('*/tracks.txt')
    tracks = read_mot(tracks_file)
    assert set(tracks[:, 0]) == set(range(1, frames + 1)) and len(set(tracks[:, 1])) == 5


@pytest.fixture(scope='module')
def trained_weights(tmp_path_factory, seed):
    """MSINet trained for a few seconds with the package's recipe on synthetic persons
    (other identities than the tracking sequence's), as boxmot weights."""
    from msinet_reid.data import make_market1501
    from msinet_reid.engine import ImageMSINetEngine

    root = tmp_path_factory.mktemp('persons')
    make_market1501(root, num_train_ids=TRAIN_IDS, num_test_ids=4, height=HEIGHT, width=WIDTH,
                    seed=seed, progress=False)
    datamanager = torchreid.data.ImageDataManager(
        root=str(root), sources='market1501', height=HEIGHT, width=WIDTH,
        transforms=['random_flip'], batch_size_train=32, num_instances=4,
        train_sampler='RandomIdentitySampler', workers=0, use_gpu=False)
    torch.manual_seed(seed)
    model = torchreid.models.build_model('msinet', datamanager.num_train_pids, loss='triplet',
                                         pretrained=False)
    optimizer = torchreid.optim.build_optimizer(model, optim='adam', lr=0.003)
    ImageMSINetEngine(datamanager, model, optimizer, use_gpu=False, seed=seed).run(
        save_dir=str(root / 'log'), max_epoch=TRAIN_EPOCHS, print_freq=10 ** 6)
    checkpoint = root / 'log' / 'model' / f'model.pth.tar-{TRAIN_EPOCHS}'
    return msinet_boxmot.prepare_weights('msinet', checkpoint, root / 'msinet_persons.pt',
                                         (HEIGHT, WIDTH))


TRAIN_IDS, TRAIN_EPOCHS = 32, 1


@pytest.mark.numerics
@pytest.mark.slow
def test_msinet_appearance_cuts_identity_switches_of_a_real_tracker(trained_weights, tmp_path,
                                                                    record_property):
    """BotSort on the synthetic street, where persons of a lane meet and turn back: with
    MSINet appearance it keeps identities that motion and IoU alone swap."""
    pytest.importorskip('motmetrics', reason='scoring needs motmetrics (extras boxmot, test)')
    example = load_script('examples/track_with_msinet.py')
    common = ['--demo', '--demo-root', str(tmp_path), '--tracker', 'botsort']
    without = example.main([*common, '--appearance', 'off', '--out', str(tmp_path / 'iou.txt')])
    with_msinet = example.main([*common, '--weights', str(trained_weights),
                                '--out', str(tmp_path / 'msinet.txt')])
    print(f'\nIoU only: {without}\nMSINet:   {with_msinet}')
    for label, scores in (('IoU only', without), ('MSINet', with_msinet)):
        for name in ('num_switches', 'idf1'):
            record_property(f'{label} {name}', scores[name])
    assert with_msinet['num_switches'] < without['num_switches']
    assert with_msinet['idf1'] > without['idf1']
