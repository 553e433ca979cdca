"""Models: configs and presets, the Transformer-XL generator, BERT and CNN discriminators,
masking for discriminator pre-training, checkpoints."""
from tgan.model.bert import BertDiscriminator
from tgan.model.cnn import CNNDiscriminator
from tgan.model.config import PRESETS, BertConfig, CNNConfig, GeneratorConfig, ModelPreset, preset
from tgan.model.transformer_xl import DecodeState, TransformerXL

__all__ = [
    "BertConfig", "BertDiscriminator", "CNNConfig", "CNNDiscriminator", "DecodeState", "GeneratorConfig",
    "ModelPreset", "PRESETS", "TransformerXL", "preset",
]
