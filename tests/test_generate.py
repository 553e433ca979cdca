import pytest
import torch

from tgan.data.midi import read_midi, write_midi
from tgan.data.notes import Note
from tgan.data.vocab import Vocab
from tgan.sampling import generate_tokens
from tgan.generate import main
from tgan.model import GeneratorConfig, TransformerXL
from tgan.model.checkpoint import save_checkpoint

VOCAB = Vocab.maestro()


@pytest.fixture
def run_dir(tmp_path):
    cfg = GeneratorConfig(vocab_size=VOCAB.lm_size, n_layer=1, d_model=16, n_head=2, d_head=8, d_inner=32,
                          tgt_len=8, mem_len=8, eval_mem_len=32)
    g = TransformerXL(cfg)
    save_checkpoint(tmp_path / "run", 5, "run", {"gen": g}, configs={"generator": cfg.to_dict(), "vocab": "maestro"})
    return tmp_path / "run"


def test_writes_parseable_midi_of_the_requested_length(run_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--checkpoint", str(run_dir), "--out", str(out), "--num", "2", "--length", "120", "--top-k", "0",
                 "--device", "cpu"]) == 0
    files = sorted(out.glob("*.mid"))
    assert len(files) == 2
    text = capsys.readouterr().out
    assert "120 tokens" in text and "tokens/s" in text
    for f in files:
        read_midi(f)  # parses


def test_primer_from_midi_is_continued(run_dir, tmp_path):
    primer = tmp_path / "primer.mid"
    write_midi([Note(60 + i % 12, 80, 0.25 * i, 0.25 * i + 0.2) for i in range(40)], primer)
    out = tmp_path / "out"
    assert main(["--checkpoint", str(run_dir), "--out", str(out), "--primer", str(primer), "--primer-seconds", "2",
                 "--length", "200", "--device", "cpu"]) == 0
    notes = read_midi(next(out.glob("*.mid"))).notes
    # the first notes are the primer's first 2 seconds (C, C#, ... every 0.25 s)
    assert [n.pitch for n in notes[:8]] == [60 + i for i in range(8)]


@pytest.mark.parametrize("args,needle", [
    (["--checkpoint", "/nonexistent/run"], "does not exist"),
    (["--primer", "/nonexistent.mid"], "nonexistent.mid"),
    (["--length", "10", "--primer-tokens", "40"], "not fewer than --length"),
])
def test_bad_input_names_what_is_wrong(run_dir, tmp_path, capsys, args, needle):
    primer = tmp_path / "p.mid"
    write_midi([Note(60, 80, 0.1 * i, 0.1 * i + 0.05) for i in range(60)], primer)
    base = ["--checkpoint", str(run_dir), "--out", str(tmp_path / "o"), "--device", "cpu"]
    if "--primer-tokens" in args:
        base += ["--primer", str(primer)]
    assert main(base + args) == 2
    assert needle in capsys.readouterr().err


def test_corrupt_checkpoint_is_a_clear_error(run_dir, tmp_path, capsys):
    ck = next((run_dir / "checkpoints").iterdir())
    (ck / "gen.safetensors").write_bytes(b"garbage")
    assert main(["--checkpoint", str(run_dir), "--out", str(tmp_path / "o")]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_top_k_never_samples_outside_the_top_k():
    torch.manual_seed(0)
    g = TransformerXL(GeneratorConfig(vocab_size=40, n_layer=1, d_model=16, n_head=2, d_head=8, d_inner=32,
                                      init_std=0.5)).eval()
    # record the logits each step sees and check the chosen token against them
    seen = []
    orig = g.step

    def spy(x, state, max_context=None):
        out = orig(x, state, max_context)
        seen.append(out.detach().clone())
        return out

    g.step = spy
    toks = generate_tokens(g, 4, 30, top_k=3, temperature=1.0, seed=1)
    for t in range(30):  # no primer: token t is drawn from the t-th logits
        top3 = seen[t].topk(3, dim=-1).indices
        assert (top3 == toks[:, t:t + 1]).any(-1).all()


def test_stops_at_the_requested_seconds():
    g = TransformerXL(GeneratorConfig(vocab_size=VOCAB.lm_size, n_layer=1, d_model=16, n_head=2, d_head=8, d_inner=32))
    secs = torch.zeros(VOCAB.lm_size)
    secs[VOCAB.time_shift(100)] = 1.0
    g.out_bias.data[VOCAB.time_shift(100)] = 50.0  # the model always advances one second
    toks = generate_tokens(g, 2, 1000, top_k=1, seed=0, max_seconds=10.0, token_seconds=secs)
    assert 10 <= toks.shape[1] <= 64  # checked every 32 tokens


def test_max_seconds_without_token_seconds_is_a_clear_error():
    g = TransformerXL(GeneratorConfig(vocab_size=VOCAB.lm_size, n_layer=1, d_model=16, n_head=2, d_head=8, d_inner=32))
    with pytest.raises(ValueError, match="token_seconds"):
        generate_tokens(g, 1, 10, max_seconds=1.0)


def test_same_seed_same_samples():
    g = TransformerXL(GeneratorConfig(vocab_size=40, n_layer=1, d_model=16, n_head=2, d_head=8, d_inner=32,
                                      init_std=0.5))
    a, b = (generate_tokens(g, 2, 20, top_k=0, seed=5) for _ in range(2))
    assert torch.equal(a, b) and not torch.equal(a, generate_tokens(g, 2, 20, top_k=0, seed=6))
