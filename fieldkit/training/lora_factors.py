"""LoRA factors and dense deltas: one module's delta, and the best rank-r factors back.

A LoRA module (A, B, scale) adds the dense delta D = scale * (A @ B), shape (in, out) in
mlx layout. Re-factoring a merged D to rank r keeps its truncated SVD, D ~ U_r S_r V_r^T,
as A = U_r sqrt(S_r), B = sqrt(S_r) V_r^T with scale 1.0: the best rank-r approximation
(Eckart-Young). Numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fieldkit.store.adapter import Adapter


def dense_delta(adapter: Adapter, module: str) -> np.ndarray:
    """Return scale * (A @ B) of one module (float64, shape (in, out))."""
    a = adapter.tensors[f"{module}.lora_a"].astype(np.float64)
    b = adapter.tensors[f"{module}.lora_b"].astype(np.float64)
    return adapter.config.scale * (a @ b)


def refactor(delta: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (A, B) with A @ B the best rank-`rank` approximation of delta.

    The top singular directions come from the eigenvectors of the smaller Gram matrix
    (D D^T or D^T D), and A @ B is delta projected onto them: the same product as the
    truncated SVD (Eckart-Young), at a quarter of the cost of a full SVD.
    """
    wide = delta.shape[0] <= delta.shape[1]
    gram = delta @ delta.T if wide else delta.T @ delta
    _, vectors = np.linalg.eigh(gram)  # ascending eigenvalues
    r = min(rank, gram.shape[0])
    top = vectors[:, ::-1][:, :r]
    if wide:  # D_r = U U^T D
        a, b = top, top.T @ delta
        s = np.linalg.norm(b, axis=1)
    else:  # D_r = D V V^T
        a, b = delta @ top, top.T
        s = np.linalg.norm(a, axis=0)
    # balance the two factors (each carries sqrt of the singular value), as the SVD form does
    root = np.sqrt(s)
    safe = np.where(root > 0, root, 1.0)
    if wide:
        a, b = a * root, b / safe[:, None]
    else:
        a, b = a / safe, b * root[:, None]
    if r < rank:  # pad with zero directions so every module keeps the declared rank
        a = np.pad(a, ((0, 0), (0, rank - r)))
        b = np.pad(b, ((0, rank - r), (0, 0)))
    return a, b


def refactor_factors(
    adapters: Sequence[Adapter], module: str, coefficients: Sequence[float], rank: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return (A, B) with A @ B the best rank-`rank` approximation of sum_j c_j D_j.

    The sum is the product of the stacked factors [c_j s_j A_j] and [B_j]; a QR of each
    leaves an SVD of a small core, so no dense delta is decomposed.
    """
    a_cat = np.concatenate(
        [
            c * ad.config.scale * ad.tensors[f"{module}.lora_a"].astype(np.float64)
            for c, ad in zip(coefficients, adapters, strict=True)
        ],
        axis=1,
    )
    b_cat = np.concatenate([ad.tensors[f"{module}.lora_b"].astype(np.float64) for ad in adapters])
    qa, ra = np.linalg.qr(a_cat)
    qb, rb = np.linalg.qr(b_cat.T)
    u, s, vt = np.linalg.svd(ra @ rb.T)
    r = min(rank, s.size)
    root = np.sqrt(s[:r])
    a, b = (qa @ u[:, :r]) * root, root[:, None] * (vt[:r] @ qb.T)
    if r < rank:
        a = np.pad(a, ((0, 0), (0, rank - r)))
        b = np.pad(b, ((0, rank - r), (0, 0)))
    return a, b
