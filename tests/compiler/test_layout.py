"""Weight layouts: packing round trips, bf16 rounding, and the one table of precisions and layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from canao.compiler.layout import (
    LAYOUTS,
    Precision,
    bf16_bits,
    pack_panels,
    pack_panels_bf16,
    parse_layout,
    round_to_bf16,
    unpack_panels,
    unpack_panels_bf16,
)
from canao.errors import CanaoError


@given(st.integers(1, 70), st.integers(1, 20), st.sampled_from([8, 16, 32]))
def test_pack_unpack_round_trip(n, k, nr):
    w = np.random.default_rng(n * k).normal(size=(n, k)).astype(np.float32)
    packed = pack_panels(w, nr)
    assert packed.shape == (-(-n // nr), k, nr)
    np.testing.assert_array_equal(unpack_panels(packed, n), w)
    if n % nr:  # the last panel is zero-padded past column n
        assert not packed[-1, :, n % nr :].any()


def test_bf16_rounding_is_nearest_even():
    one_ulp = 2.0**-7  # bf16 keeps 7 fraction bits
    x = np.array(
        [1.0 + one_ulp / 2, 1.0 + 3 * one_ulp / 2, 1.0 + one_ulp / 2 + 2.0**-20, -2.5e-3, 3.0e38], dtype=np.float32
    )
    want = np.array([1.0, 1.0 + 2 * one_ulp, 1.0 + one_ulp], dtype=np.float32)  # ties go to the even neighbour
    np.testing.assert_array_equal(round_to_bf16(x)[:3], want)
    np.testing.assert_array_equal(round_to_bf16(x), torch.tensor(x).to(torch.bfloat16).float().numpy())
    assert bf16_bits(np.float32([1.0]))[0] == 0x3F80


@given(st.integers(1, 70), st.integers(1, 21), st.sampled_from([8, 16, 32]))
def test_bf16_pack_unpack_round_trip(n, k, nr):
    w = np.random.default_rng(n * k).normal(size=(n, k)).astype(np.float32)
    packed = pack_panels_bf16(w, nr)
    assert packed.dtype == np.float32 and packed.shape == (-(-n // nr), -(-k // 2), nr)
    np.testing.assert_array_equal(unpack_panels_bf16(packed, n, k), torch.tensor(w).to(torch.bfloat16).float().numpy())
    words = packed.view(np.uint32)
    np.testing.assert_array_equal(words[0, 0, 0] & 0xFFFF, bf16_bits(w[0, 0:1])[0])  # k even in the low half
    if k % 2:  # an odd K is padded with a zero in the last pair's high half
        assert not (words[:, -1, :] >> 16).any()


def test_precision_parses_values_and_names_the_choices():
    assert Precision.parse("bf16") is Precision.BF16 and Precision.parse(Precision.INT8) is Precision.INT8
    assert f"{Precision.BF16}" == "bf16" and str(Precision.FP32) == "fp32" and Precision.INT8 == "int8"
    with pytest.raises(CanaoError, match="fp32.*bf16.*int8.*'fp8'"):
        Precision.parse("fp8")


def test_every_precision_has_one_layout_that_parses_back():
    assert set(LAYOUTS) == set(Precision)
    assert len({layout.c_code for layout in LAYOUTS.values()}) == len(LAYOUTS)  # C codes are distinct
    for precision in Precision:
        for nr in (8, 16, 32):
            assert parse_layout(precision.layout.name(nr)) == (precision, nr)
    with pytest.raises(CanaoError, match="unknown packed weight layout"):
        parse_layout("fp8panel16")
