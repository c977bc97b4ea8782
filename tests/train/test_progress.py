import math

from canao.train.progress import loss_text


def test_loss_text_shows_four_decimals():
    assert loss_text(0.123456) == "loss 0.1235"
    assert loss_text(2.0) == "loss 2.0000"


def test_loss_text_is_empty_for_a_pass_without_training():
    # NaN is what a pass that trains nothing (the teacher outputs for the distillation cache) reports
    assert loss_text(math.nan) == ""
