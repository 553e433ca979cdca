"""Critics: BERT classifiers trained against one generator's samples, used to select among
candidates when sampling (``python -m tgan.critic`` trains one; ``Generator.generate(...,
candidates=N, select="rerank" | "sir", critic=...)`` uses one).

- ``tgan.critic.model``: ``Critic`` (scoring, the generator identity check), ``load_critic``.
- ``tgan.critic.train``: ``CriticConfig``, ``train_critic``.
- ``tgan.critic.select``: ``choose`` (rerank / SIR) and ``generate_selected``.
"""
from tgan.critic.model import Critic, CriticError, generator_fingerprint, is_critic, load_critic
from tgan.critic.select import SELECTIONS, choose

__all__ = ["Critic", "CriticError", "SELECTIONS", "choose", "generator_fingerprint", "is_critic", "load_critic"]
