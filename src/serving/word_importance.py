"""Which words drive one prediction: Integrated Gradients on the embedding layer, cross-checked by occlusion.

``explain(classifier, text)`` -> ``Explanation`` (``python -m src.explain`` prints its top words and writes its
page, src/serving/explanation.py).

Both scores are in units of P(label 1), so they read alike: positive means the word pushes towards
``label_names[1]``.

- Integrated Gradients (Captum's ``LayerIntegratedGradients`` on ``net.embedding``): the embeddings are moved
  from a baseline of ``<pad>`` at every position (``<pad>`` embeds to the zero vector) to the text's, and each
  token's score is the path integral of the gradient times its embedding difference, summed over the embedding
  dimensions. The scores add up to P(text) - P(baseline) up to Captum's reported convergence delta.
- Occlusion: the token is dropped from the sequence (the text gets one word shorter) and the score is
  P(text) - P(text without it). Every variant runs in one padded batch.
"""

from __future__ import annotations

import warnings
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from data_modules.batching import pad_collate
from data_modules.vocabulary import tokenize
from src.serving.explanation import Explanation
from src.serving.prediction import sigmoid
from src.serving.pytorch_classifier import PyTorchClassifier
from src.utils.errors import UserInputError

DEFAULT_STEPS = 50  # Riemann steps of the IG path integral; Captum's default, delta ~1e-3 on our models


# -- the two methods --------------------------------------------------------------------------------------
def _probability_fn(net: nn.Module):
    def probability(tokens: Tensor, lengths: Tensor) -> Tensor:
        return torch.sigmoid(net(tokens, lengths).logits.float())  # [B]
    return probability


def integrated_gradients(classifier: PyTorchClassifier, tokens: Tensor, lengths: Tensor,
                         n_steps: int = DEFAULT_STEPS) -> tuple[Tensor, Tensor]:
    """IG of P(label 1) w.r.t. the embedding layer, with an all-``<pad>`` baseline.

    tokens ``[B, T]`` (padded with ``pad_index``), lengths ``[B]`` -> (attributions ``[B, T]``, delta ``[B]``).
    Padded positions hold ``<pad>`` in input and baseline alike, so their embedding difference, and with it
    their attribution, is exactly zero.
    """
    from captum.attr import LayerIntegratedGradients

    net = classifier.net
    tokens, lengths = tokens.to(classifier.device), lengths.cpu()
    baseline = torch.full_like(tokens, classifier.pad_index)
    method = LayerIntegratedGradients(_probability_fn(net), net.embedding)
    was_training = net.training
    net.eval()
    try:
        # cuDNN's RNN backward refuses eval mode; the plain kernels compute the same gradient.
        with torch.backends.cudnn.flags(enabled=False):
            attributions, delta = method.attribute(tokens, baselines=baseline, additional_forward_args=(lengths,),
                                                   n_steps=n_steps, return_convergence_delta=True)
    finally:
        net.train(was_training)
    return attributions.sum(-1).detach().cpu(), delta.detach().cpu()  # [B, T, E] -> [B, T]


@torch.no_grad()
def occlusion(classifier: PyTorchClassifier, ids: Sequence[int], groups: Optional[Sequence[Sequence[int]]] = None,
              batch_size: int = 256) -> list[float]:
    """P(label 1) of ``ids`` minus P(label 1) with the positions of each group dropped.

    groups: lists of positions to drop together; default one group per position. A group that drops
    everything leaves ``[<unk>]``, as the encoder does for an empty text. All variants run as padded batches
    together with the full text.
    """
    ids = list(ids)
    groups = [[i] for i in range(len(ids))] if groups is None else groups
    unk = classifier.vocabulary.unk_index
    variants = [ids]
    for group in groups:
        drop = set(group)
        variants.append([t for i, t in enumerate(ids) if i not in drop] or [unk])
    probabilities = []
    for start in range(0, len(variants), batch_size):
        batch = pad_collate([(v, 0.0) for v in variants[start:start + batch_size]], classifier.pad_index)
        probabilities += sigmoid(classifier.logits(batch.tokens, batch.lengths)).tolist()
    return [probabilities[0] - p for p in probabilities[1:]]


def explain(classifier: PyTorchClassifier, text: str, n_steps: int = DEFAULT_STEPS) -> Explanation:
    """Both methods on one text, tokenized exactly as ``classifier.predict_texts`` tokenizes it."""
    words = tokenize(text)
    if not words:
        raise UserInputError("the text has no words to explain (a word is a run of letters or digits); "
                             "pass a sentence, e.g. --text \"a moving, well acted film\"")
    max_len = classifier.max_len
    truncated = max(0, len(words) - max_len) if max_len else 0
    if truncated:
        warnings.warn(f"the text has {len(words)} words but the model reads only the first {max_len}; "
                      f"the last {truncated} are not explained", stacklevel=2)
        words = words[:max_len]
    ids = classifier.encode_texts([text])[0]
    tokens, lengths = torch.tensor([ids]), torch.tensor([len(ids)])
    attributions, delta = integrated_gradients(classifier, tokens, lengths, n_steps)
    both = torch.cat([tokens, torch.full_like(tokens, classifier.pad_index)])
    p, p_baseline = sigmoid(classifier.logits(both, torch.cat([lengths, lengths]))).tolist()
    unk = classifier.vocabulary.unk_index
    return Explanation(
        text=text, tokens=words, known=[i != unk for i in ids], probability=p,
        label=classifier.label_names[int(p >= 0.5)], label_names=list(classifier.label_names),
        integrated_gradients=attributions[0].tolist(), occlusion=occlusion(classifier, ids),
        baseline_probability=p_baseline, delta=float(delta[0]), n_steps=n_steps, truncated=truncated)


