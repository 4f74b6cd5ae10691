"""The search example and the search benchmark run end to end on tiny settings."""

from msinet_reid.data import make_market1501
from msinet_reid.search import load_genotype

from helpers import load_script


def test_search_example_searches_then_trains_the_genotype(tmp_path, capsys):
    make_market1501(tmp_path, num_train_ids=8, num_test_ids=10, images_per_camera=2,
                    num_cameras=2, height=64, width=32, progress=False)
    save_dir = tmp_path / 'log'
    genotype_file = load_script('examples/search.py').main([
        '--root', str(tmp_path), '--dataset', 'market1501', '--epochs', '1',
        '--batch-size', '8', '--height', '64', '--width', '32', '--workers', '0',
        '--device', 'cpu', '--save-dir', str(save_dir), '--train-epochs', '1',
    ])
    assert genotype_file == save_dir / 'genotype.json'
    genotype = ' '.join(load_genotype(genotype_file))
    output = capsys.readouterr().out
    assert f'Searched genotype: {genotype}' in output
    assert (save_dir / 'train' / 'model' / 'model.pth.tar-1').is_file()  # torchreid trained it


def test_search_benchmark_quick_mode(capsys):
    results = load_script('benchmarks/search_step.py').main(['--quick', '--device', 'cpu'])
    assert results['search_time'] > 0 and results['fixed_time'] > 0
    output = capsys.readouterr().out
    assert 'TCM search iteration' in output and 'MSINet training step' in output
