"""An independent, literal SVCCA following google/svcca's algorithm step by step (written from its description).

Neurons x datapoints layout as in google/svcca; SVD step as in its tutorial; CCA as in cca_core's
get_cca_similarity: np.cov, rescale by the largest covariance entry, drop low-variance neurons, add epsilon,
pseudo-inverse, eigen-decomposition square root, SVD; the score is the mean of the coefficients.
"""

import numpy as np


def svd_reduce(acts, variance, mode):
    centred = acts - acts.mean(axis=1, keepdims=True)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    energy = s if mode == "singular" else s ** 2
    keep = len(s)
    for i in range(len(s)):
        if np.sum(energy[:i]) / np.sum(energy) >= variance:
            keep = i
            break
    return np.dot(s[:keep] * np.eye(keep), vt[:keep])


def inverse_sqrt(matrix):
    w, v = np.linalg.eigh(np.linalg.pinv(matrix))
    return v @ np.diag(np.sqrt(w)) @ v.T


def cca_mean(a, b, epsilon):
    nx = a.shape[0]
    cov = np.cov(a, b)
    sxx, sxy, syy = cov[:nx, :nx], cov[:nx, nx:], cov[nx:, nx:]
    xmax, ymax = np.max(np.abs(sxx)), np.max(np.abs(syy))
    sxx, syy, sxy = sxx / xmax, syy / ymax, sxy / np.sqrt(xmax * ymax)
    kx, ky = np.abs(np.diag(sxx)) >= epsilon, np.abs(np.diag(syy)) >= epsilon
    if not kx.any() or not ky.any():
        return 0.0
    sxx, syy, sxy = sxx[kx][:, kx], syy[ky][:, ky], sxy[kx][:, ky]
    sxx = sxx + epsilon * np.eye(len(sxx))
    syy = syy + epsilon * np.eye(len(syy))
    arr = inverse_sqrt(sxx) @ sxy @ inverse_sqrt(syy)
    return float(np.mean(np.abs(np.linalg.svd(arr, compute_uv=False))))


def reference_svcca(x, y, variance=0.9, epsilon=1e-10, mode="singular"):
    """x, y: (sentences x features), as crossrep stores them."""
    a, b = np.asarray(x, np.float64).T, np.asarray(y, np.float64).T
    if np.allclose(a.std(axis=1), 0) or np.allclose(b.std(axis=1), 0):
        return 0.0
    return cca_mean(svd_reduce(a, variance, mode), svd_reduce(b, variance, mode), epsilon)


def reference_pwcca(x, y, variance=0.9, epsilon=1e-10, mode="singular"):
    """PWCCA (Morcos et al. 2018) on the SVD-reduced activations, written from the paper: CCA from the
    covariances as above; canonical variates h_i = u_i^T Sxx^-1/2 a (unit length); weights
    alpha_i = sum_j |<h_i, a_j>| over the reduced neurons a_j of the side with fewer neurons (x on a tie);
    the score is sum_i alpha_i rho_i / sum_i alpha_i."""
    a = svd_reduce(np.asarray(x, np.float64).T, variance, mode)
    b = svd_reduce(np.asarray(y, np.float64).T, variance, mode)
    if a.shape[0] > b.shape[0]:
        a, b = b, a
    nx = a.shape[0]
    cov = np.cov(a, b)
    sxx, sxy, syy = cov[:nx, :nx], cov[:nx, nx:], cov[nx:, nx:]
    xmax, ymax = np.max(np.abs(sxx)), np.max(np.abs(syy))
    sxx, syy, sxy = sxx / xmax, syy / ymax, sxy / np.sqrt(xmax * ymax)
    sxx = sxx + epsilon * np.eye(nx)
    syy = syy + epsilon * np.eye(len(syy))
    whiten = inverse_sqrt(sxx)
    u, rho, _ = np.linalg.svd(whiten @ sxy @ inverse_sqrt(syy))
    centred = a - a.mean(axis=1, keepdims=True)
    h = u.T @ whiten @ centred
    h /= np.linalg.norm(h, axis=1, keepdims=True)
    alpha = np.abs(h @ centred.T).sum(axis=1)
    return float((alpha * rho[:nx]).sum() / alpha.sum())
