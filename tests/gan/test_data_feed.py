"""Real music all the way: training crops and the MLE stream never hold PAD, samplers never emit it."""
import numpy as np
import pytest
import torch

from tgan.gan.data_feed import DataFeed
from tgan.gan.mle import PieceStream
from tgan.gan.rollout import sample_fakes
from tgan.sampling import generate_tokens
from tgan.model import GeneratorConfig, TransformerXL


@pytest.fixture(scope="module")
def feed(midi_folder):
    return DataFeed(str(midi_folder), progress=False)


def test_crops_longer_than_the_corpus_are_music_joined_by_eos(feed):
    torch.manual_seed(0)
    v = feed.vocab
    longest = max(f.n_tokens for f in feed.prepared.files["train"])
    L = feed.train_tokens + 50  # more than every training token together
    crops = feed.sample(6, L)
    assert crops.shape == (6, L) and longest < L
    assert not (crops == v.pad_id).any() and not (crops == v.mask_id).any()
    n_eos = (crops == v.eos_id).sum(1)
    assert (n_eos >= L // (longest + 1)).all()  # pieces joined behind EOS
    events = crops[crops != v.eos_id]
    assert int(events.min()) >= v.note_on_offset and int(events.max()) < v.mask_id


def test_crops_start_inside_pieces_or_at_a_piece_start(feed):
    torch.manual_seed(1)
    crops = feed.sample(64, 40)
    starts = crops[:, 0] == feed.vocab.eos_id
    assert 0 < int(starts.sum()) < 32  # START_SHARE of the rows begin a piece behind EOS


def test_mle_stream_fills_the_memory_and_joins_pieces(feed):
    g = TransformerXL(GeneratorConfig(vocab_size=feed.vocab.lm_size, n_layer=1, d_model=16, n_head=2, d_head=8,
                                      d_inner=32, tgt_len=16, mem_len=48, eval_mem_len=64))
    stream = PieceStream(feed.draw_piece, 3, 16, "cpu", seed=0, eos_id=feed.vocab.eos_id)
    longest = max(f.n_tokens for f in feed.prepared.files["train"])
    rows, mem = [], []
    for _ in range(longest // 16 + 8):
        x, y, mems = stream.next()
        assert torch.equal(x[:, 1:], y[:, :-1])
        rows.append(x)
        mem.append(0 if mems is None else mems[0].shape[1])
        _, stream.mems = g(x, mems=mems)  # what mle_step does
    assert mem[:4] == [0, 16, 32, 48] and set(mem[3:]) == {48}  # full memory from then on, never reset
    seq = torch.cat(rows, 1)
    assert not (seq == feed.vocab.pad_id).any()
    assert ((seq == feed.vocab.eos_id).sum(1) >= 1).all()  # every row went on into a next piece
    # its generator state comes back from a checkpoint: the same pieces follow
    state = stream.state_dict()
    for _ in range(3):
        stream.next()
    other = PieceStream(feed.draw_piece, 3, 16, "cpu", seed=5, eos_id=feed.vocab.eos_id)
    stream.load_state_dict(state)
    other.load_state_dict(state)
    assert all(torch.equal(p, q) for p, q in zip([stream.next()[0] for _ in range(3)],
                                                 [other.next()[0] for _ in range(3)]))


def _pad_loving_generator(V=23):
    torch.manual_seed(0)
    g = TransformerXL(GeneratorConfig(vocab_size=V, n_layer=1, d_model=16, n_head=2, d_head=8, d_inner=32,
                                      tgt_len=8, mem_len=8, eval_mem_len=16, pad_id=0))
    with torch.no_grad():
        g.out_bias[0] = 30.0  # PAD (id 0) would win almost every draw
        g.out_bias[1] = 29.0  # EOS stays possible: the sampler still has a likely choice
    return g


def test_rollouts_never_emit_pad():
    g = _pad_loving_generator()
    real = torch.randint(2, 23, (4, 3 + 32))
    fakes = sample_fakes(g, real, 3, 32, 8, beta=1.0)
    ids = fakes.argmax(-1)
    assert not (ids == 0).any() and (ids == 1).float().mean() > 0.5


def test_generation_never_emits_pad():
    g = _pad_loving_generator()
    out = generate_tokens(g, 3, 40, top_k=0, temperature=1.0, seed=0)
    assert not (out[:, 1:] == 0).any() and (out == 1).float().mean() > 0.5


@pytest.mark.parametrize("preset", ["tiny", "small", "paper"])
def test_every_presets_crops_are_music_on_short_pieces(feed, preset):
    """The defaults ask for crops longer than any piece here (small, paper: 2048 + 5); they are
    joined pieces, never padded."""
    from tgan.gan.config import build_parser, config_from_args
    from tgan.model import preset as model_preset

    cfg = config_from_args(build_parser().parse_args(["--preset", preset]), on_gpu=False)
    torch.manual_seed(0)
    d_len = cfg.disc_len or model_preset(preset).bert.max_len
    for length in (cfg.prefix_len + cfg.rollout_len, d_len):
        crops = feed.sample(2, length)
        assert crops.shape == (2, length) and not (crops == feed.vocab.pad_id).any()


@pytest.mark.parametrize("piece_len", [1, 15, 16, 17, 40])
def test_mle_stream_joins_pieces_of_any_length_exactly(piece_len):
    count = iter(range(1000))

    def draw(rng):  # pieces 2.., each a run of one id, so the joins can be read back
        return np.full(piece_len, 2 + next(count), dtype=np.int64)

    stream = PieceStream(draw, 2, 16, "cpu", seed=0, eos_id=1)
    xs = []
    for _ in range(6):
        x, y, _ = stream.next()
        assert x.shape == y.shape == (2, 16) and torch.equal(x[:, 1:], y[:, :-1])
        xs.append(x)
    row = torch.cat(xs, 1)[0]
    ids = row[row != 1]
    assert (torch.diff(ids) >= 0).all()  # pieces in order, one EOS between consecutive pieces
    breaks = torch.nonzero(row == 1).flatten()
    assert all(row[i - 1] != row[i + 1] for i in breaks.tolist() if 0 < i < len(row) - 1)


def test_fresh_mle_rows_begin_a_piece_behind_eos_as_generation_does():
    # generation starts from EOS with no memory, so some fresh rows must too; the others start
    # inside a piece
    count = iter(range(100000))

    def draw(rng):  # piece k: ids 2, 3, ... so its first token (2) is recognisable
        next(count)
        return np.arange(2, 42, dtype=np.int64)

    stream = PieceStream(draw, 8, 16, "cpu", seed=0, eos_id=1, crop_segments=1)
    firsts = []
    for _ in range(100):
        x, _, mems = stream.next()
        assert mems is None
        firsts += x[:, :2].tolist()
    at_start = sum(f == [1, 2] for f in firsts)
    assert 0.07 < at_start / len(firsts) < 0.2  # START_SHARE = 0.125 of 800 fresh rows
    assert all(f[0] != 1 for f in firsts if f != [1, 2])  # the rest start inside a piece


def test_mle_stream_restarts_every_crop_with_a_full_memory_in_between(feed):
    g = TransformerXL(GeneratorConfig(vocab_size=feed.vocab.lm_size, n_layer=1, d_model=16, n_head=2, d_head=8,
                                      d_inner=32, tgt_len=16, mem_len=32, eval_mem_len=64))
    stream = PieceStream(feed.draw_piece, 3, 16, "cpu", seed=1, eos_id=feed.vocab.eos_id, crop_segments=4)
    mem, last, jumps = [], None, []
    for _ in range(12):
        x, y, mems = stream.next()
        mem.append(0 if mems is None else mems[0].shape[1])
        if last is not None:
            jumps.append(not torch.equal(x[:, 0], last))  # a row goes on where it stopped, or jumps
        last = y[:, -1].clone()
        _, stream.mems = g(x, mems=mems)
    assert mem == [0, 16, 32, 32] * 3  # a restart every 4 segments, the memory full in between
    # a segment's first input is the previous segment's last target, except after a restart
    assert jumps == [False, False, False, True] * 2 + [False, False, False]


def test_trainer_restarts_the_mle_stream_every_four_memory_lengths(tmp_path, midi_folder):
    from tgan.gan.config import build_parser, config_from_args
    from tgan.gan.trainer import Trainer

    cfg = config_from_args(build_parser().parse_args(["--data", str(midi_folder), "--run-dir", str(tmp_path / "r"),
                                                      "--preset", "tiny"]), on_gpu=False)
    assert Trainer(cfg).stream.crop_segments == 4  # tiny: memory 64, segments of 64
    cfg.mle_crop_segments = 0
    assert Trainer(cfg).stream.crop_segments == 0
