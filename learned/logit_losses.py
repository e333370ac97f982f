"""Classification losses that regularize the logits: label smoothing, MaxSup, the z-loss.

Each function takes logits of shape ``(..., K)`` (classes on the last axis)
and, for the first two, integer targets of shape ``(...)``, and returns a
0-d tensor averaged over the samples, with the autograd graph kept. Writing
``lse(z) = log sum_k exp(z_k)`` and ``mean(z) = sum_k z_k / K``, the
cross-entropy is ``lse(z) - z_y`` and

* label smoothing is ``CE + alpha (z_y - mean(z))``: it penalises the gap
  between the *target* logit and the mean logit;
* MaxSup is ``CE + alpha (max_k z_k - mean(z))``: the same penalty on the
  *largest* logit, the same as label smoothing when the prediction is right
  and without its push towards confident errors when it is wrong;
* the z-loss ``weight * lse(z)^2`` keeps the log partition function near 0
  (large-model training stability).
"""

from __future__ import annotations

import torch

from tikhon._core.checks import check_interval, check_nonneg, check_real_floating

__all__ = ["label_smoothing_loss", "maxsup_loss", "z_loss"]


def _logits(logits, where):
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{where}: logits must be a torch.Tensor, got {type(logits).__name__}")
    logits = check_real_floating(logits, "logits", where)
    if logits.ndim == 0 or logits.shape[-1] == 0:
        raise ValueError(f"{where}: logits must have a non-empty class axis (the last), got shape {tuple(logits.shape)}")
    return logits


def _target(target, logits, where):
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"{where}: target must be a torch.Tensor of class indices, got {type(target).__name__}")
    if target.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(f"{where}: target must hold integer class indices, got {target.dtype}")
    if tuple(target.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"{where}: target has shape {tuple(target.shape)}, expected {tuple(logits.shape[:-1])} "
            f"(logits of shape {tuple(logits.shape)} without the class axis)"
        )
    k = logits.shape[-1]
    if bool(((target < 0) | (target >= k)).any()):
        raise ValueError(f"{where}: target must be class indices in [0, {k}), got values outside")
    return target.long()


def _cross_entropy_parts(logits, target):
    """Per-sample ``(lse(z), z_y)``."""
    lse = torch.logsumexp(logits, dim=-1)
    zy = logits.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return lse, zy


def label_smoothing_loss(logits, target, alpha=0.1):
    r"""Cross-entropy against smoothed labels ``(1 - alpha) onehot(y) + alpha / K``.

    ``-sum_k q_k log softmax(z)_k`` with ``q = (1 - alpha) e_y + alpha / K``,
    averaged over the samples; equal to ``CE + alpha (z_y - mean_k z_k)``
    (what ``torch.nn.functional.cross_entropy(..., label_smoothing=alpha)``
    computes for ``(n, K)`` logits).

    Parameters
    ----------
    logits : torch.Tensor
        Float logits of shape ``(..., K)``.
    target : torch.Tensor
        Integer class indices of shape ``(...)``, in ``[0, K)``.
    alpha : float
        Smoothing ``0 <= alpha <= 1`` (default 0.1; 0 is the cross-entropy).

    Returns
    -------
    torch.Tensor
        The mean loss, a 0-d tensor (graph kept).

    References
    ----------
    .. [SVI16] C. Szegedy, V. Vanhoucke, S. Ioffe, J. Shlens and Z. Wojna,
       "Rethinking the Inception architecture for computer vision", IEEE
       Conference on Computer Vision and Pattern Recognition (CVPR), 2016.

    Examples
    --------
    >>> import torch
    >>> from tikhon.learned import label_smoothing_loss
    >>> z = torch.tensor([[2.0, 0.0, -1.0]])
    >>> ls = label_smoothing_loss(z, torch.tensor([0]), alpha=0.1)
    >>> bool(torch.isclose(ls, torch.nn.functional.cross_entropy(z, torch.tensor([0]), label_smoothing=0.1)))
    True
    """
    where = "label_smoothing_loss"
    logits = _logits(logits, where)
    target = _target(target, logits, where)
    alpha = check_interval(alpha, "alpha", where, 0.0, 1.0)
    lse, zy = _cross_entropy_parts(logits, target)
    return (lse - zy + alpha * (zy - logits.mean(-1))).mean()


def maxsup_loss(logits, target, alpha=0.1):
    r"""Max suppression: ``CE + alpha (max_k z_k - mean_k z_k)``, averaged over the samples.

    The label-smoothing penalty ``alpha (z_y - mean z)`` moved from the
    target logit to the largest one: identical to label smoothing on
    correctly classified samples, while on misclassified ones it lowers the
    wrong top-1 logit instead of the target's (Zhou et al. 2025, whose
    analysis shows label smoothing's term amplifies errors there).

    Parameters
    ----------
    logits : torch.Tensor
        Float logits of shape ``(..., K)``.
    target : torch.Tensor
        Integer class indices of shape ``(...)``, in ``[0, K)``.
    alpha : float
        Weight ``0 <= alpha <= 1`` of the penalty (default 0.1; the authors
        raise it linearly from 0.1 to 0.2 over training).

    Returns
    -------
    torch.Tensor
        The mean loss, a 0-d tensor (graph kept).

    References
    ----------
    .. [ZLC25] Y. Zhou, H. Li, Z.-Q. Cheng, X. Yan, Y. Dong, M. Fritz and
       M. Keuper, "MaxSup: Overcoming representation collapse in label
       smoothing", Advances in Neural Information Processing Systems
       (NeurIPS), 2025 (arXiv:2502.15798).

    Examples
    --------
    >>> import torch
    >>> from tikhon.learned import label_smoothing_loss, maxsup_loss
    >>> z = torch.tensor([[2.0, 0.0, -1.0]])
    >>> right, wrong = torch.tensor([0]), torch.tensor([1])
    >>> bool(torch.isclose(maxsup_loss(z, right), label_smoothing_loss(z, right)))
    True
    >>> bool(maxsup_loss(z, wrong) > label_smoothing_loss(z, wrong))  # the top-1 logit is penalised
    True
    """
    where = "maxsup_loss"
    logits = _logits(logits, where)
    target = _target(target, logits, where)
    alpha = check_interval(alpha, "alpha", where, 0.0, 1.0)
    lse, zy = _cross_entropy_parts(logits, target)
    return (lse - zy + alpha * (logits.amax(-1) - logits.mean(-1))).mean()


def z_loss(logits, weight=1e-4):
    r"""The z-loss ``weight * lse(z)^2``: the squared log partition function, averaged over the samples.

    Added to the cross-entropy it pulls ``log Z = log sum_k exp(z_k)``
    towards 0, which keeps the softmax's normaliser stable in low precision
    (PaLM's auxiliary loss with ``weight = 1e-4``; ST-MoE's router z-loss,
    with ``1e-3``). It does not change the softmax probabilities' optimum
    when the logits can shift freely.

    Parameters
    ----------
    logits : torch.Tensor
        Float logits of shape ``(..., K)``.
    weight : float
        Weight ``>= 0`` (default ``1e-4``, PaLM's).

    Returns
    -------
    torch.Tensor
        The mean of ``weight * lse(z)^2`` over the samples, a 0-d tensor (graph kept).

    References
    ----------
    .. [CND23] A. Chowdhery, S. Narang, J. Devlin et al., "PaLM: Scaling
       language modeling with pathways", Journal of Machine Learning
       Research, 2023.
    .. [ZBL22] B. Zoph, I. Bello, S. Kumar, N. Du, Y. Huang, J. Dean, N.
       Shazeer and W. Fedus, "ST-MoE: Designing stable and transferable
       sparse expert models", arXiv:2202.08906, 2022.

    Examples
    --------
    >>> import torch
    >>> from tikhon.learned import z_loss
    >>> float(z_loss(torch.zeros(1, 4, dtype=torch.float64), weight=1.0))  # (log 4)^2
    1.9218120556728056
    """
    where = "z_loss"
    logits = _logits(logits, where)
    weight = check_nonneg(weight, "weight", where)
    return weight * torch.logsumexp(logits, dim=-1).square().mean()
