"""SamplingSettings: one type, one set of checks, wherever sampling settings come from."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cosyn.model.settings import SamplingSettings


@pytest.mark.parametrize(("field", "value", "message"), [
    ("guidance", math.nan, "guidance=nan must be a finite number"),
    ("guidance", math.inf, "guidance=inf must be a finite number"),
    ("guidance", "2", "guidance='2' must be a finite number"),
    ("steps", 2.5, r"steps=2.5 must be an integer"),
    ("steps", math.nan, "steps=nan must be an integer"),
    ("steps", True, "steps=True must be an integer"),
    ("steps", 0, r"steps=0 must lie in 1..1000"),
    ("steps", 1001, r"steps=1001 must lie in 1..1000"),
    ("n", 65, r"n=65 must lie in 1..64"),
    ("seed", 2**63, r"seed=9223372036854775808 must lie in -9223372036854775808..9223372036854775807 \(a signed 64"),
    # finite but absurd: 1e30 sampled an all-NaN distance map and a black image with exit code 0
    ("guidance", 1e30, r"guidance=1e\+30 must lie in 0..20 \(1 is unguided"),
    ("guidance", -1, r"guidance=-1.0 must lie in 0..20"),
    ("sampler", ["ddim"], r"unknown sampler \['ddim'\]"),
    ("sampler", "euler", "unknown sampler 'euler'; choose one of"),
    ("refine", "yes", "refine='yes' must be true or false"),
])
def test_bad_values_are_refused_naming_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        SamplingSettings(**{field: value})


def test_an_integer_too_long_to_print_is_refused_by_name():
    # Python refuses to turn an integer of over 4,300 digits into text: the message must not try
    for name in ("seed", "steps", "n"):
        with pytest.raises(ValueError, match=rf"{name}=<an integer of about 5001 digits> must lie in"):
            SamplingSettings(**{name: 10**5000})


def test_values_are_normalised_and_copies_are_checked_too():
    s = SamplingSettings(steps=25.0, guidance=np.float32(1.5), seed=np.int64(7), n=2.0)
    assert (s.steps, s.guidance, s.seed, s.n) == (25, 1.5, 7, 2)
    assert type(s.steps) is int and type(s.guidance) is float and type(s.seed) is int
    assert s.with_(refine=False) == SamplingSettings(25, 1.5, "dpm++", 7, 2, False)
    with pytest.raises(ValueError, match="guidance=nan"):
        s.with_(guidance=math.nan)
    with pytest.raises(TypeError):
        s.with_(stpes=3)


def test_front_end_limits_apply_on_top():
    SamplingSettings(steps=100, n=8).check_limits(100, 8)
    with pytest.raises(ValueError, match="steps=101: the studio samples with 1 to 100 steps"):
        SamplingSettings(steps=101).check_limits(100, 8, who="the studio")
    with pytest.raises(ValueError, match="n=9: this service samples 1 to 8 triples per request"):
        SamplingSettings(n=9).check_limits(100, 8)
    assert SamplingSettings(steps=10, n=2).pixel_steps(64, 32) == 2 * 10 * 64 * 32
