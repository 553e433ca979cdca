"""tgan: adversarial training of Transformer-XL music generators (Transformer-GAN).

Layers, imported one way only: ``tgan.kernels`` (Triton) -> ``tgan.ops`` -> ``tgan.model`` ->
``tgan.gan`` -> the command lines ``tgan.train``, ``tgan.generate``, ``tgan.evaluate``.
``tgan.data`` and ``tgan.metrics`` never import the model.
"""
import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
