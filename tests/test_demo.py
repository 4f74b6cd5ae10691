"""The built-in demo end to end (tiny settings) and its command line."""

import pytest
import torch

from msinet_reid import cli, demo
from msinet_reid.demo import DemoConfig, run_demo

# Enough test identities that an untrained model ranks poorly, and steps enough to learn.
TINY = dict(epochs=4, lr=0.01, batch_size=16, num_instances=4, height=64, width=32,
            num_train_ids=16, num_test_ids=16, workers=0, print_freq=0)


@pytest.mark.numerics
@pytest.mark.slow
def test_tiny_demo_trains_and_evaluates_through_torchreid(tmp_path, capsys, monkeypatch, seed,
                                                          record_property):
    built = []
    build_model = demo.models.build_model

    def recording_build_model(*args, **kwargs):
        model = build_model(*args, **kwargs)
        built.append({k: v.clone() for k, v in model.state_dict().items()})
        return model

    monkeypatch.setattr(demo.models, 'build_model', recording_build_model)
    results = run_demo(DemoConfig(root=tmp_path, seed=seed, **TINY))
    out = capsys.readouterr().out
    assert set(results) == {'untrained', 'trained'}
    for state, scores in results.items():
        assert set(scores) == {'rank1', 'mAP', 'mINP'}
        record_property(f'{state} mAP', scores['mAP'])
    # Even this tiny run learns: the trained model ranks the test identities better. Over
    # 3 seeds x 3 CPU kernel sets x 1 and 2 threads, mAP rose by 0.051 to 0.29.
    assert results['trained']['mAP'] > results['untrained']['mAP'] + 0.02
    # Progress, once every epoch (epochs differ in batches), and the table are shown.
    epoch_lines = [line for line in out.splitlines() if line.startswith('epoch: [')]
    assert [line.split(']')[0] for line in epoch_lines] == [f'epoch: [{e}/4' for e in range(1, 5)]
    for line in ('[1/3]', '[3/3]', 'Rank-1', 'mINP', 'untrained msinet', 'trained msinet'):
        assert line in out
    # torchreid's engine saved its checkpoint, with weights that training changed.
    checkpoints = list((tmp_path / 'log' / 'model').glob('model.pth.tar-*'))
    assert len(checkpoints) == 1
    trained = torch.load(checkpoints[0], map_location='cpu', weights_only=False)['state_dict']
    (untrained,) = built
    assert trained.keys() == untrained.keys()
    for key in ('conv1.conv.weight', 'cells.7.conv4b.conv.weight', 'f_classifier.weight'):
        assert not torch.equal(trained[key], untrained[key]), key


def test_cli_passes_every_option_to_the_demo(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(cli, 'run_demo', seen.append)
    assert cli.main(['demo', '--root', str(tmp_path), '--epochs', '3', '--lr', '0.01',
                     '--model', 'msinet_vr', '--device', 'cpu']) == 0
    (config,) = seen
    assert config == DemoConfig(root=tmp_path, epochs=3, lr=0.01, model='msinet_vr')


def test_cli_help_and_bad_command(capsys):
    # (python -m msinet_reid runs this main: tests/test_bad_data.py runs it so.)
    with pytest.raises(SystemExit) as exited:
        cli.main(['demo', '--help'])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert '--epochs' in out and 'training epochs' in out
    with pytest.raises(SystemExit):
        cli.main(['no-such-command'])
