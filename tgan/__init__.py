"""tgan: adversarial training of Transformer-XL music generators (Transformer-GAN).

Python API (imported on first use):
  - ``tgan.load(path, device=None)``: a generator from a run, a checkpoint, a model folder, a
    bundled model ("bach-tiny") or a Hub id ("org/name"); ``.generate(...)`` returns samples to
    ``.save()`` as MIDI (``tgan.api``), optionally each kept out of N candidates by a critic
    (``tgan.critic``).
  - ``tgan.read_midi(path)``, ``tgan.encode(notes, vocab)``, ``tgan.decode(tokens, vocab)``,
    ``tgan.Vocab``: the event representation (``tgan.data``).
  - ``tgan.evaluate_samples(samples, data="bach", scorer=..., ...)``: Table 1 as the dict that
    ``python -m tgan.evaluate`` writes (``tgan.table1``).

Layers, lowest first. A module imports from its own layer and lower ones only, and a private
name (``_x``) only from inside its own package (tests/test_layers.py reads these lines):
  1. tgan.progress, tgan.data, tgan.ops, tgan._C (the C++ extension)
  2. tgan.metrics
  3. tgan.model
  4. tgan.sampling, tgan.hub
  5. tgan.gan, tgan.critic.model, tgan.critic.select
  6. tgan.api, tgan.scorer, tgan.scorer.train, tgan.critic
  7. tgan.critic.train, tgan.table1
  8. tgan.train, tgan.generate, tgan.evaluate, tgan.export, tgan.experiment, tgan.experiment_report,
     tgan.scorer.__main__, tgan.critic.__main__, tgan.data.__main__
The package itself (``import tgan``: the API above, loaded on first use) counts as layer 6.
"""
import importlib
import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

_API = {
    "load": ("tgan.api", "load"),
    "Generator": ("tgan.api", "Generator"),
    "Sample": ("tgan.api", "Sample"),
    "read_midi": ("tgan.data.midi", "read_midi"),
    "write_midi": ("tgan.data.midi", "write_midi"),
    "encode": ("tgan.data.events", "encode"),
    "decode": ("tgan.data.events", "decode"),
    "Vocab": ("tgan.data.vocab", "Vocab"),
    "evaluate_samples": ("tgan.table1", "evaluate_samples"),
}
__all__ = ["__version__", *_API]


def __dir__():
    """The public API (loaded on first use) with the module's own names."""
    return sorted(set(globals()) | set(_API))


def __getattr__(name):
    if name in _API:
        module, attr = _API[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tgan' has no attribute {name!r}")
