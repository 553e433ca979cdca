"""The Python API: load a trained generator and make music with it.

    import tgan
    model = tgan.load("runs/ppo_gp-20261129-120000")       # a run, a checkpoint or a model folder
    samples = model.generate(num=2, seconds=30, primer="piece.mid", primer_seconds=10, seed=0)
    for i, s in enumerate(samples):
        s.save(f"continuation_{i}.mid")

``python -m tgan.generate`` is a command line over the same functions. Model folders (written by
``python -m tgan.export``) hold ``config.json`` and ``model.safetensors`` only: loading one reads
JSON and tensors, never code.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)

# The layout of model folders this version writes and reads (config.json "format").
MODEL_FORMAT = 1
DEFAULT_PRIMER_TOKENS = 50  # the paper's priming excerpt when a MIDI primer is given no length


@dataclass
class Sample:
    """One generated sequence: its token ids, with the primer's at the front.

    ``notes`` and ``repaired`` come from decoding the tokens leniently: ``repaired`` counts the
    grammar faults decoding had to fix (a NOTE_OFF with no sounding note, a note struck again
    while sounding, a note never released, a zero-length note). A well-trained model makes few;
    many mean the samples are not yet music the decoder can take as written.
    """

    tokens: np.ndarray
    primer_length: int
    vocab: object
    settings: dict = field(default_factory=dict)

    @functools.cached_property
    def _decoded(self):
        """(notes, DecodeStats), decoded once for notes, repaired, save and info."""
        from tgan.data.events import decode

        return decode(self.tokens, self.vocab, cut_at_end=True)  # the music ends where the tokens do

    @property
    def notes(self) -> list:
        """The decoded notes (``tgan.data.notes.Note``: pitch, velocity, start, end in seconds)."""
        return self._decoded[0]

    @property
    def repaired(self) -> int:
        """Grammar faults the lenient decoder repaired (see the class docstring)."""
        return self._decoded[1].repaired

    @property
    def length(self) -> int:
        """Tokens of the sample, primer included, up to its end: the EOS it sampled (not counted)
        or the length asked for."""
        st = self._decoded[1]
        return int(st.n_tokens - 1 if st.eos else st.n_tokens)

    @property
    def ended_by_eos(self) -> bool:
        """Whether the generator ended the piece (sampled EOS) before the length asked for."""
        return bool(self._decoded[1].eos)

    @property
    def seconds(self) -> float:
        """Seconds of music: the time the sample's tokens span, up to its end."""
        return float(self.vocab.token_seconds[self.tokens[: self.length]].sum())

    @property
    def primer_seconds(self) -> float:
        """Where the primer ends, in seconds of music."""
        return float(self.vocab.token_seconds[self.tokens[: self.primer_length]].sum())

    def save(self, path, part: str = "all") -> Path:
        """Write the sample as a MIDI file; returns the path.

        ``part="all"``: primer and continuation, with a MIDI marker event "primer end" where the
        primer ends (when there is one). ``part="continuation"``: only the notes that start after
        the primer, moved to start at 0.
        """
        from tgan.data.midi import write_midi
        from tgan.data.notes import Note

        if part not in ("all", "continuation"):
            raise ValueError(f"part must be 'all' or 'continuation', got {part!r}")
        path = Path(path)
        cut = self.primer_seconds if self.primer_length else 0.0
        if part == "all":  # what tokens_to_midi writes, from the cached decode
            write_midi(self.notes, path, markers=[(cut, "primer end")] if self.primer_length else ())
        else:
            write_midi([Note(n.pitch, n.velocity, max(0.0, n.start - cut), max(0.0, n.end - cut), n.track)
                        for n in self.notes if n.start >= cut - 1e-9], path)
        return path

    def to_midi(self):
        """The sample as a ``mido.MidiFile``."""
        import mido

        with tempfile.TemporaryDirectory() as d:
            return mido.MidiFile(self.save(Path(d) / "sample.mid"))

    def info(self) -> dict:
        """How the sample was made (settings, primer length) and its decoding repairs."""
        return {**self.settings, "tokens": self.length, "ended_by_eos": self.ended_by_eos,
                "seconds_of_music": round(self.seconds, 3), "primer_tokens": int(self.primer_length),
                "primer_seconds": round(self.primer_seconds, 3), "repaired_events": self.repaired}


class Generator:
    """A trained Transformer-XL generator with its vocabulary (what ``tgan.load`` returns)."""

    def __init__(self, model, vocab, source: Path, info: dict | None = None, critic=None):
        self.model, self.vocab, self.source = model, vocab, Path(source)
        self.info = dict(info or {})
        self.critic = critic  # a tgan.Critic trained against this generator (a model folder's), or None

    @functools.cached_property
    def fingerprint(self) -> str:
        """A hash of the generator's weights: the identity a critic records
        (``tgan.critic.generator_fingerprint``)."""
        from tgan.critic.model import generator_fingerprint

        return generator_fingerprint(self.model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def __repr__(self) -> str:
        cfg = self.model.cfg
        return (f"tgan.Generator({self.source}, {cfg.n_layer} layers x {cfg.d_model}, vocabulary "
                f"{self.vocab.preset} ({cfg.vocab_size} ids), on {self.device})")

    def primer(self, primer, primer_seconds: float | None = None,
               primer_tokens: int | None = None) -> np.ndarray:
        """Token ids of a primer: a MIDI path, a ``mido.MidiFile``, or token ids.

        A MIDI primer is cut to ``primer_seconds`` (notes sounding past it are shortened) or to
        its first ``primer_tokens`` tokens (default 50); token ids are cut to ``primer_tokens``.
        """
        return primer_to_tokens(primer, self.vocab, primer_seconds, primer_tokens)

    def generate(self, num: int = 1, length: int | None = None, seconds: float | None = None,
                 primer=None, primer_seconds: float | None = None,
                 primer_tokens: int | None = None, temperature: float = 0.95, top_k: int = 32,
                 top_p: float = 1.0, seed: int | None = None, context: int | None = None,
                 progress: bool = False, candidates: int = 1, select: str = "rerank", critic=None,
                 select_every: int | None = None, tau: float = 1.0) -> list[Sample]:
        """Sample ``num`` sequences, each ``length`` tokens long with the primer included
        (default 4096), stopping early once every sample spans ``seconds`` of music.

        ``primer``: None (start a piece), a MIDI path, a ``mido.MidiFile`` or token ids (see
        ``primer``). ``temperature``, ``top_k`` (0 = all), ``top_p`` (1 = off): sampling
        controls. ``seed`` makes the samples repeat; ``context``: positions a token attends to
        (default the model's evaluation memory). Raises ValueError naming a bad argument.

        Selection (``tgan.critic.select``): with ``candidates=N`` > 1, N candidates are drawn per
        sample in one batch and one is kept by ``critic`` (a ``tgan.Critic`` or a critic folder;
        default the model folder's own): ``select="rerank"`` keeps the highest score, ``"sir"``
        draws in proportion to exp(score / ``tau``). ``select_every=T`` chooses every T tokens
        along the piece instead of once per piece. The critic must have been trained against this
        generator (``tgan.critic.CriticError``, a ValueError, otherwise). Each sample's
        ``settings["selection"]`` records the settings, the cost (generated tokens per kept token,
        seconds) and its ``critic_score``.
        """
        import time

        from tgan.sampling import generate_tokens

        _positive_int("num", num)
        _seed_value(seed)
        length = 4096 if length is None else _positive_int("length", length)
        if seconds is not None and not seconds > 0:
            raise ValueError(f"seconds must be > 0, got {seconds}")
        if context is not None:
            _positive_int("context", context)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not (isinstance(top_k, int) and top_k >= 0):
            raise ValueError(f"top_k must be an int >= 0, got {top_k!r}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        chosen = self._selection(candidates, select, critic, select_every, tau, length, temperature, top_k, top_p)
        toks = None if primer is None else self.primer(primer, primer_seconds, primer_tokens)
        if toks is not None and len(toks) >= length:
            raise ValueError(f"length ({length}) must exceed the primer's {len(toks)} tokens")
        vocab = self.vocab
        token_seconds = torch.tensor(vocab.token_seconds[: vocab.lm_size], dtype=torch.float32)
        bar = None
        if progress:
            from tgan.progress import progress as progress_bar

            bar = progress_bar(total=length, desc="tokens", unit="tok")
        common = dict(primer=None if toks is None else torch.from_numpy(toks), temperature=temperature,
                      top_k=top_k, top_p=top_p, context=context, eos_id=vocab.eos_id, seed=seed,
                      device=self.device, progress=bar, max_seconds=seconds, token_seconds=token_seconds)
        t0 = time.perf_counter()
        try:
            if chosen is None:
                out, picked = generate_tokens(self.model, num, length, **common), None
            else:
                from tgan.critic.select import generate_selected

                out, picked = generate_selected(self.model, chosen, num, length, candidates, select, tau,
                                                select_every, **common)
        finally:
            if bar is not None:
                if bar.n < bar.total:  # stopped early by ``seconds``: the bar ends at what was made
                    bar.total = bar.n
                    bar.refresh()
                bar.close()
        settings = {"source": str(self.source), "seed": seed, "temperature": temperature,
                    "top_k": top_k, "top_p": top_p, "context": context, "length": length,
                    "seconds": seconds,
                    "primer": None if primer is None else _describe(primer)}
        if picked is not None:
            settings["selection"] = {
                "candidates": candidates, "select": select, "tau": tau if select == "sir" else None,
                "select_every": select_every, "critic": str(chosen.source or "in memory"),
                "critic_auc": (chosen.meta.get("auc") or {}).get("held_out"),
                "generated_tokens": picked["generated_tokens"], "kept_tokens": picked["kept_tokens"],
                "tokens_per_kept": round(picked["tokens_per_kept"], 3), "refed_tokens": picked["refed_tokens"],
                "seconds": round(time.perf_counter() - t0, 3), "critic_seconds": round(picked["critic_seconds"], 3)}
        n = 0 if toks is None else len(toks)
        samples = [Sample(row, n, vocab, dict(settings, index=i)) for i, row in enumerate(out.cpu().numpy())]
        for i, sample in enumerate(samples if picked is not None else ()):
            sample.settings["critic_score"] = round(float(picked["scores"][i]), 5)
            if "block_scores" in picked:
                sample.settings["block_scores"] = [round(float(x), 4) for x in picked["block_scores"][i]]
        return samples

    def _selection(self, candidates, select, critic, select_every, tau, length, temperature, top_k, top_p):
        """The critic to select with (None: no selection); ValueError naming a bad argument."""
        from tgan.critic.model import as_critic
        from tgan.critic.select import SELECTIONS

        _positive_int("candidates", candidates)
        if select not in SELECTIONS:
            raise ValueError(f"select must be one of {', '.join(SELECTIONS)}, got {select!r}")
        if not (isinstance(tau, (int, float)) and tau > 0):
            raise ValueError(f"tau must be > 0, got {tau!r}")
        if select_every is not None:
            _positive_int("select_every", select_every)
        if candidates == 1:
            return None
        critic = critic if critic is not None else self.critic
        if critic is None:
            raise ValueError(f"candidates={candidates} needs a critic: pass critic=DIR (python -m tgan.critic "
                             f"--generator {self.source} trains one) or load a model folder exported with one")
        critic = as_critic(critic, self.device)
        critic.check(self)
        trained = critic.meta.get("sampling") or {}
        ours = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
        differ = {k: (trained.get(k), v) for k, v in ours.items() if k in trained and trained[k] != v}
        if differ:
            logger.warning("the critic %s was trained on samples drawn with %s; these are drawn with %s: its "
                           "scores estimate the density ratio for the other setting", critic.source,
                           {k: a for k, (a, _) in differ.items()}, {k: b for k, (_, b) in differ.items()})
        return critic


def _seed_value(seed):
    """None or an int in [0, 2**63); ValueError naming ``seed`` otherwise."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2 ** 63:
        raise ValueError(f"seed must be None or an int in [0, 2**63), got {seed!r}")
    return int(seed)


def resolve_device(device, what: str = "device") -> torch.device:
    """``device`` ("cpu", "cuda", "cuda:1", a torch.device or None = CUDA when available) as a
    torch.device; ValueError naming ``what`` for a name torch does not know or a CUDA device this
    torch or machine does not have."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"{what} {device!r} is not a device (cpu, cuda, cuda:N): {e}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"{what} {device!r}: tgan runs on cpu or cuda, not {dev.type}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        why = "this torch is built without CUDA" if torch.version.cuda is None else "no GPU is visible"
        raise ValueError(f"{what} {device!r}: CUDA is not available ({why}); use cpu")
    return dev


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _describe(primer) -> str:
    if isinstance(primer, (str, os.PathLike)):
        return str(primer)
    if hasattr(primer, "tracks"):
        return f"mido.MidiFile({getattr(primer, 'filename', None) or 'in memory'})"
    return f"{len(primer)} token ids"


def primer_to_tokens(primer, vocab, primer_seconds: float | None = None,
                     primer_tokens: int | None = None) -> np.ndarray:
    """See ``Generator.primer``; raises ValueError naming the primer when it yields no tokens."""
    from tgan.data.events import encode
    from tgan.data.midi import read_midi
    from tgan.data.notes import Performance

    if primer_seconds is not None and not primer_seconds > 0:
        raise ValueError(f"primer_seconds must be > 0, got {primer_seconds}")
    if primer_tokens is not None:
        _positive_int("primer_tokens", primer_tokens)
    if isinstance(primer, (str, os.PathLike)) or hasattr(primer, "tracks"):
        if hasattr(primer, "tracks"):  # a mido.MidiFile: read it as the files are read
            with tempfile.TemporaryDirectory() as d:
                path = Path(d) / "primer.mid"
                primer.save(str(path))
                perf = read_midi(path)
        else:
            if not Path(primer).is_file():
                raise ValueError(f"primer: no such MIDI file {primer}")
            perf = read_midi(primer)
        if primer_seconds is not None:
            cut = primer_seconds
            notes = [n for n in perf.notes if n.start < cut]
            notes = [n if n.end <= cut else type(n)(n.pitch, n.velocity, n.start, cut, n.track)
                     for n in notes]
            perf = Performance(notes, perf.tempos)
        toks = np.asarray(encode(perf, vocab, out_of_range="drop"), dtype=np.int64)
        if primer_seconds is None:
            if not primer_tokens and len(toks) > DEFAULT_PRIMER_TOKENS:
                logger.warning("primer %s: its first %d of %d tokens are used (pass primer_seconds or "
                               "primer_tokens to choose)", _describe(primer), DEFAULT_PRIMER_TOKENS, len(toks))
            toks = toks[: primer_tokens or DEFAULT_PRIMER_TOKENS]
        elif primer_tokens:
            toks = toks[:primer_tokens]
    else:
        toks = _primer_ids(primer, vocab)
        if primer_seconds is not None:
            t = np.cumsum(vocab.token_seconds[toks])
            toks = toks[: int(np.searchsorted(t, primer_seconds, side="right"))]
        if primer_tokens:
            toks = toks[:primer_tokens]
    if len(toks) == 0:
        raise ValueError(f"primer {_describe(primer)} yields no tokens (no notes"
                         + (f" in its first {primer_seconds} s)" if primer_seconds else ")"))
    return toks


def _primer_ids(primer, vocab) -> np.ndarray:
    """Token ids of a primer given as ids; ValueError naming the primer for anything that is not a
    sequence of integer event ids (floats are refused, not truncated; PAD and EOS are no events)."""
    kind = type(primer).__name__
    if isinstance(primer, (dict, set, str, bytes)) or not hasattr(primer, "__len__"):
        raise ValueError(f"primer must be a MIDI path, a mido.MidiFile or token ids (a sequence of ints), got {kind}")
    try:
        arr = np.asarray(primer.cpu() if torch.is_tensor(primer) else primer)
    except (ValueError, TypeError) as e:
        raise ValueError(f"primer: token ids must be a flat sequence of ints ({e})") from None
    if arr.size and (arr.dtype.kind not in "iuf" or not np.all(np.mod(arr, 1) == 0)):
        raise ValueError(f"primer: token ids must be integers, got {arr.dtype} values such as "
                         f"{arr.reshape(-1)[:3].tolist()}")
    toks = arr.astype(np.int64).reshape(-1)
    if toks.size and (toks.min() < 0 or toks.max() >= vocab.lm_size):
        raise ValueError(f"primer: token ids must be in [0, {vocab.lm_size}) for the "
                         f"{vocab.preset} vocabulary, got {toks.min()}..{toks.max()}")
    special = {vocab.pad_id: "PAD", vocab.eos_id: "EOS (it would end the piece)"}
    bad = [int(t) for t in toks if int(t) in special]
    if bad:
        raise ValueError(f"primer: id {bad[0]} is {special[bad[0]]}, not a musical event; a primer holds "
                         f"events only (ids {vocab.note_on_offset}..{vocab.lm_size - 1})")
    return toks


BUNDLED = Path(__file__).resolve().parent / "models"  # model folders shipped with the package


def bundled_models() -> list[str]:
    """Names of the model folders shipped with the package (``tgan.load(name)``)."""
    return sorted(p.name for p in BUNDLED.iterdir() if (p / "config.json").is_file()) if BUNDLED.is_dir() else []


def load(path, device=None) -> Generator:
    """A generator from a run directory, a checkpoint directory, a model folder, the name of a
    bundled model (``"bach-tiny"``: ``bundled_models()``) or a Hugging Face Hub model id
    (``org/name``, with ``pip install "tgan-music[hub]"``; see ``tgan.hub``).

    ``device``: "cpu", "cuda", a torch.device, or None (CUDA when available). Raises ValueError
    naming the path when it holds no generator, and for a model folder of a newer format.
    """
    from tgan.data.vocab import Vocab
    from tgan.model import GeneratorConfig

    p = Path(path)
    if not p.exists() and str(path) in bundled_models():
        p = BUNDLED / str(path)
    elif not p.exists():
        from tgan.hub import hub_folder, is_hub_id

        if not is_hub_id(path):
            raise ValueError(f"tgan.load: {p} does not exist (nor is it a bundled model, "
                             f"{', '.join(bundled_models()) or 'none installed'}, or a Hub model id, org/name)")
        p = hub_folder(str(path))
    device = resolve_device(device)
    if (p / "config.json").is_file() and not (p / "checkpoints").is_dir():  # a run dir has a config.json too
        cfg, state = read_model_folder(p)
        try:
            vocab = Vocab.by_name(cfg["vocab"])
            gcfg = GeneratorConfig.from_dict(cfg["generator"])
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise ValueError(f"model folder {p}: config.json does not describe a generator "
                             f"(vocab {cfg.get('vocab')!r}; {e})") from None
        info = {k: v for k, v in cfg.items() if k not in ("generator",)}
        model = _build(gcfg, state, vocab, p)
        from tgan.critic.model import is_critic, load_critic

        critic = load_critic(p, device) if is_critic(p) else None
    else:
        from tgan.model.checkpoint import CheckpointError

        try:
            model, vocab, ck = generator_from_checkpoint(p)
        except CheckpointError as e:
            raise ValueError(f"tgan.load: {e}") from None
        critic = None
        info = {"checkpoint": str(ck.path), "step": ck.step,
                "data": ck.configs.get("train", {}).get("data") or "bach",
                "preset": ck.configs.get("train", {}).get("preset")}
        p = ck.path
    return Generator(model.to(device).eval(), vocab, p, info, critic)


def _build(gcfg, state: dict, vocab, where):
    """The TransformerXL of ``gcfg`` with ``state``; ValueError naming ``where`` on a mismatch."""
    from tgan.model import TransformerXL

    if gcfg.vocab_size != vocab.lm_size:
        raise ValueError(f"{where}: the generator predicts {gcfg.vocab_size} ids but the "
                         f"{vocab.preset} vocabulary has {vocab.lm_size}")
    try:
        model = TransformerXL(gcfg)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{where}: the generator's config is not valid ({e})") from None
    mine = model.state_dict()
    missing = sorted(set(mine) - set(state))
    unexpected = sorted(set(state) - set(mine))
    shapes = [k for k in sorted(set(mine) & set(state)) if tuple(mine[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} tensor(s) differ in shape, e.g. {k}: {tuple(state[k].shape)} in the "
                         f"weights, {tuple(mine[k].shape)} by the config (n_layer {gcfg.n_layer}, d_model "
                         f"{gcfg.d_model})")
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise ValueError(f"{where}: the generator's weights do not fit its config: {'; '.join(parts)}")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as e:
        raise ValueError(f"{where}: the generator's weights do not load ({str(e).splitlines()[0]})") from None
    return model


def generator_from_checkpoint(path):
    """(generator on the CPU, vocab, Checkpoint) of a run or checkpoint directory; raises
    CheckpointError (a ValueError) naming the path when it holds no loadable generator."""
    from tgan.data.vocab import Vocab
    from tgan.model import GeneratorConfig
    from tgan.model.checkpoint import CheckpointError, load_checkpoint

    ck = load_checkpoint(path, map_location="cpu")
    if "gen" not in ck.models or "generator" not in ck.configs:
        raise CheckpointError(f"checkpoint {ck.path} (kind {ck.kind!r}, models "
                              f"{sorted(ck.models) or 'none'}) holds no generator; give a training "
                              "run directory or one of its checkpoints")
    vocab = Vocab.by_name(ck.configs.get("vocab", "maestro"))
    try:
        model = _build(GeneratorConfig.from_dict(ck.configs["generator"]), ck.models["gen"], vocab,
                       f"checkpoint {ck.path}")
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    return model, vocab, ck


def read_model_folder(path) -> tuple[dict, dict]:
    """(config.json as a dict, the generator's tensors) of a model folder; JSON and safetensors
    only. Raises ValueError naming the folder for a missing file or a newer format."""
    from safetensors.torch import load_file

    p = Path(path)
    try:
        cfg = json.loads((p / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"model folder {p}: config.json is unreadable ({e})") from None
    if not isinstance(cfg, dict) or "format" not in cfg:
        raise ValueError(f"model folder {p}: config.json has no 'format': it was not written by "
                         "python -m tgan.export (a tgan model folder's config.json starts with its format)")
    fmt = cfg.get("format")
    if not isinstance(fmt, int) or fmt > MODEL_FORMAT:
        raise ValueError(f"model folder {p} has format {fmt!r}, written by tgan "
                         f"{cfg.get('tgan_version', '?')}; this tgan reads format {MODEL_FORMAT} "
                         "and older: upgrade tgan")
    for key in ("generator", "vocab"):
        if key not in cfg:
            raise ValueError(f"model folder {p}: config.json has no {key!r}")
    weights = p / "model.safetensors"
    if not weights.is_file():
        raise ValueError(f"model folder {p} has no model.safetensors (the generator's weights)")
    try:
        return cfg, load_file(str(weights))
    except Exception as e:  # safetensors' own error types on corrupt files
        raise ValueError(f"model folder {p}: model.safetensors is corrupt ({e})") from None
