r"""SEARLE-style distillation: a network learns the pseudo-words that OTI found per image.

Optimisation-based inversion (:mod:`cirlib.zeroshot.oti`) costs hundreds of text-tower passes per
image, too slow at query time. SEARLE (Baldrati et al., 2023) therefore trains a mapping network
:math:`\phi` (:class:`~cirlib.zeroshot.mapping_network.PseudoWordMapper`, GELU, dropout 0.5 in
their release) to reproduce them: for a batch of images with OTI pseudo-words :math:`v_i`,

.. math:: \mathcal{L}(\phi) = \mathrm{NTXent}_\tau\big(\{v_i\},\ \{\phi(x_i)\}\big),

the contrastive loss of :func:`cirlib.losses.nt_xent.nt_xent_loss` (:math:`\tau = 0.25`), so
:math:`\phi(x_i)` must point like :math:`v_i` and unlike the other images' pseudo-words. Their
release trains with AdamW (learning rate 1e-4, weight decay 0.01, batch 256).

Left out, as in the inversion: the language-model regulariser (weight 0.25 in their release);
see :mod:`cirlib.zeroshot.oti` for why. The loss and its training run are the registered method
:mod:`cirlib.methods.searle` (``get("searle")``); this module holds the temperature it uses.
"""

from __future__ import annotations

__all__ = ["SEARLE_TEMPERATURE"]

SEARLE_TEMPERATURE = 0.25
