"""The synthetic MOT sequence: layout, determinism, reuse, bad arguments, scoring."""
import configparser

import pytest

from msinet_reid.data.tracking import make_mot_sequence, read_mot, score_tracks

SMALL = dict(num_people=4, num_frames=12, width=160, height=96, progress=False)


@pytest.fixture(scope='module')
def sequence(tmp_path_factory):
    return make_mot_sequence(tmp_path_factory.mktemp('mot'), **SMALL)


def test_mot_challenge_layout(sequence):
    assert sorted(p.name for p in (sequence / 'img1').iterdir()) == [
        f'{frame:06d}.jpg' for frame in range(1, 13)]
    info = configparser.ConfigParser()
    info.optionxform = str
    info.read(sequence / 'seqinfo.ini')
    assert dict(info['Sequence']) == {
        'name': 'SYNTH-01', 'imDir': 'img1', 'frameRate': '30', 'seqLength': '12',
        'imWidth': '160', 'imHeight': '96', 'imExt': '.jpg'}
    gt, det = read_mot(sequence / 'gt' / 'gt.txt'), read_mot(sequence / 'det' / 'det.txt')
    assert gt.shape == (4 * 12, 9) and set(gt[:, 1]) == {1, 2, 3, 4}
    assert ((gt[:, 8] >= 0) & (gt[:, 8] <= 1)).all()
    # every person visible enough has one detection, no one else
    assert len(det) == (gt[:, 8] >= 0.5).sum() and (det[:, 1] == -1).all()


def test_same_seed_same_files_other_seed_other_files(sequence, tmp_path):
    again = make_mot_sequence(tmp_path / 'a', **SMALL)
    other = make_mot_sequence(tmp_path / 'b', **SMALL, seed=1)
    for name in ('gt/gt.txt', 'det/det.txt', 'img1/000007.jpg'):
        assert (again / name).read_bytes() == (sequence / name).read_bytes()
        assert (other / name).read_bytes() != (sequence / name).read_bytes()


def test_reused_when_present_and_never_overwrites_foreign_data(sequence, tmp_path):
    frame = sequence / 'img1' / '000001.jpg'
    stamp = frame.stat().st_mtime_ns
    assert make_mot_sequence(sequence.parent, **SMALL) == sequence
    assert frame.stat().st_mtime_ns == stamp
    (tmp_path / 'SYNTH-01').mkdir()
    (tmp_path / 'SYNTH-01' / 'mine.txt').write_text('real data')
    with pytest.raises(FileExistsError, match='not written by'):
        make_mot_sequence(tmp_path, **SMALL)


@pytest.mark.parametrize('bad', [dict(num_people=0), dict(num_frames=1.5), dict(name='a/b'),
                                 dict(width=True)])
def test_bad_arguments_are_named(tmp_path, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        make_mot_sequence(tmp_path, **{**SMALL, **bad})


def test_score_tracks_counts_an_identity_switch(sequence):
    pytest.importorskip('motmetrics', reason='scoring needs motmetrics (extras boxmot, test)')
    gt = read_mot(sequence / 'gt' / 'gt.txt')
    tracks = gt[gt[:, 8] >= 0.5].copy()
    assert score_tracks(tracks, gt) == {'mota': 1.0, 'idf1': 1.0, 'num_switches': 0.0}
    late = (tracks[:, 1] == 1) & (tracks[:, 0] > 6)
    tracks[late, 1] = 99  # person 1 gets a new identity halfway
    scores = score_tracks(tracks, gt)
    assert scores['num_switches'] == 1 and scores['idf1'] < 1
