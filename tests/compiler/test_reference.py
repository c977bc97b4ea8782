"""The reference executor's op definitions against their formulas (it is the definition every backend meets)."""

from __future__ import annotations

import math

import numpy as np

from canao.compiler.reference import gelu, layer_norm, softmax


def test_gelu_forms():
    x = np.linspace(-4, 4, 41).astype(np.float64)
    exact = 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    tanh = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    assert np.abs(gelu(x, "gelu") - exact).max() < 1e-6
    assert np.abs(gelu(x, "gelu_tanh") - tanh).max() < 1e-6


def test_layer_norm_normalises_the_last_axis():
    rng = np.random.default_rng(0)
    x, g, b = rng.normal(size=(3, 8)), rng.normal(size=8), rng.normal(size=8)
    y = layer_norm(x, np.ones(8), np.zeros(8), 1e-12)
    assert np.allclose(y.mean(-1), 0, atol=1e-6) and np.allclose(y.var(-1), 1, atol=1e-5)
    assert np.allclose(layer_norm(x, g, b, 1e-12), y * g + b, atol=1e-6)


def test_softmax_is_stable_and_sums_to_one():
    s = np.array([[1000.0, 1001.0, -np.finfo(np.float32).max], [0.0, 0.0, 0.0]])
    p = softmax(s)
    assert np.all(np.isfinite(p)) and np.allclose(p.sum(-1), 1.0)
    assert p[0, 2] == 0.0 and np.isclose(p[0, 1] / p[0, 0], math.e)
