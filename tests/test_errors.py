"""Table-driven bad input: every error of SPEC §2 is a ValueError/TypeError whose message names
the argument (and the shapes where shapes are involved) — never a crash or an IndexError."""

import numpy as np
import pytest

import nbconv as nc

x4 = np.zeros((2, 4, 8, 9), np.float32)
w4 = np.zeros((6, 4, 3, 3), np.float32)
x3 = np.zeros((2, 4, 9), np.float32)
w3 = np.zeros((6, 4, 3), np.float32)
X4 = "(2, 4, 8, 9)"

# (id, call, exception, substrings that must all appear in the message)
CASES = [
    # (C, H, W) is an unbatched image, as in PyTorch (tests/test_pytorch_habits.py)
    ("conv2d x ndim", lambda: nc.conv2d(x4[0, 0], w4), ValueError, ["'x'", "(8, 9)"]),
    ("conv2d weight ndim", lambda: nc.conv2d(x4, w4[0]), ValueError, ["'weight'", "(4, 3, 3)"]),
    ("conv2d channel mismatch", lambda: nc.conv2d(x4, np.zeros((6, 3, 3, 3))), ValueError,
     ["weight", X4, "(6, 3, 3, 3)"]),
    ("conv2d groups divide C", lambda: nc.conv2d(x4, np.zeros((6, 1, 3, 3)), groups=3),
     ValueError, ["groups", X4]),
    ("conv2d groups divide F", lambda: nc.conv2d(x4, np.zeros((5, 2, 3, 3)), groups=2),
     ValueError, ["groups", "(5, 2, 3, 3)"]),
    ("conv2d kernel too large", lambda: nc.conv2d(x4, np.zeros((6, 4, 9, 3))), ValueError,
     [X4, "(6, 4, 9, 3)"]),
    ("conv2d dilated kernel too large", lambda: nc.conv2d(x4, w4, dilation=(4, 1)), ValueError,
     ["dilation", X4]),
    ("conv2d stride 0", lambda: nc.conv2d(x4, w4, stride=0), ValueError, ["'stride'"]),
    ("conv2d negative stride", lambda: nc.conv2d(x4, w4, stride=(1, -2)), ValueError,
     ["'stride'"]),
    ("conv2d dilation 0", lambda: nc.conv2d(x4, w4, dilation=0), ValueError, ["'dilation'"]),
    ("conv2d negative padding", lambda: nc.conv2d(x4, w4, padding=-1), ValueError,
     ["'padding'"]),
    ("conv2d padding string", lambda: nc.conv2d(x4, w4, padding="full"), ValueError,
     ["'padding'", "full"]),
    ("conv2d padding_mode", lambda: nc.conv2d(x4, w4, padding=1, padding_mode="mirror"),
     ValueError, ["'padding_mode'", "mirror"]),
    ("conv2d float stride", lambda: nc.conv2d(x4, w4, stride=1.5), TypeError, ["'stride'"]),
    ("conv2d bias shape", lambda: nc.conv2d(x4, w4, np.zeros(5)), ValueError, ["'bias'", "(5,)"]),
    ("conv2d algorithm", lambda: nc.conv2d(x4, w4, algorithm="fft9"), ValueError,
     ["'algorithm'", "fft9"]),
    ("conv2d float16", lambda: nc.conv2d(x4.astype(np.float16), w4), TypeError, ["'x'",
                                                                                "float16"]),
    ("conv2d complex", lambda: nc.conv2d(x4.astype(np.complex64), w4), TypeError, ["'x'"]),
    ("conv2d reflect pad too wide",
     lambda: nc.conv2d(x4, w4, padding=8, padding_mode="reflect"), ValueError,
     ["'padding'", X4]),
    ("conv2d_backward dy shape",
     lambda: nc.conv2d_backward(np.zeros((2, 6, 5, 5)), x4, w4), ValueError,
     ["'dy'", "(2, 6, 5, 5)"]),
    ("conv1d x ndim", lambda: nc.conv1d(x4, w3), ValueError, ["'x'", X4]),
    ("conv1d channel mismatch", lambda: nc.conv1d(x3, np.zeros((6, 2, 3))), ValueError,
     ["weight", "(2, 4, 9)", "(6, 2, 3)"]),
    ("conv1d output < 1", lambda: nc.conv1d(x3, np.zeros((6, 4, 12))), ValueError,
     ["(2, 4, 9)", "(6, 4, 12)"]),
    ("max_pool2d ndim", lambda: nc.max_pool2d(x4[0, 0], 2), ValueError, ["'x'", "(8, 9)"]),
    ("max_pool2d kernel too large", lambda: nc.max_pool2d(x4, 10), ValueError, [X4]),
    ("max_pool2d padding > half kernel", lambda: nc.max_pool2d(x4, 2, padding=2), ValueError,
     ["'padding'"]),
    ("max_pool2d stride 0", lambda: nc.max_pool2d(x4, 2, stride=0), ValueError, ["'stride'"]),
    ("max_pool2d dilation 0", lambda: nc.max_pool2d(x4, 2, dilation=0), ValueError,
     ["'dilation'"]),
    ("max_pool2d kernel 0", lambda: nc.max_pool2d(x4, 0), ValueError, ["'kernel_size'"]),
    ("max_pool2d_backward indices shape",
     lambda: nc.max_pool2d_backward(np.zeros((2, 4, 4, 4)), np.zeros((2, 4, 3, 3), np.int64),
                                    x4.shape), ValueError, ["'indices'", "(2, 4, 3, 3)"]),
    ("avg_pool2d negative padding", lambda: nc.avg_pool2d(x4, 3, padding=-1), ValueError,
     ["'padding'"]),
    ("avg_pool2d kernel too large", lambda: nc.avg_pool2d(x4, (3, 12)), ValueError, [X4]),
    ("adaptive_avg_pool2d size", lambda: nc.adaptive_avg_pool2d(x4, 0), ValueError,
     ["'output_size'"]),
    ("linear mismatch", lambda: nc.linear(np.zeros((3, 5)), np.zeros((2, 4))), ValueError,
     ["weight", "(3, 5)", "(2, 4)"]),
    ("linear bias", lambda: nc.linear(np.zeros((3, 4)), np.zeros((2, 4)), np.zeros(3)),
     ValueError, ["'bias'", "(3,)"]),
    ("batch_norm channels",
     lambda: nc.batch_norm(x4, np.zeros(3), np.ones(3)), ValueError, ["running_mean", "(3,)"]),
    ("batch_norm eval without stats", lambda: nc.batch_norm(x4, None, None), ValueError,
     ["running_mean"]),
    ("softmax axis", lambda: nc.softmax(np.zeros((2, 3)), axis=2), ValueError, ["'axis'"]),
    ("dropout p", lambda: nc.dropout(x4, p=1.5), ValueError, ["'p'"]),
    ("lrn size", lambda: nc.local_response_norm(x4, 0), ValueError, ["'size'"]),
    ("correlate2d mode", lambda: nc.correlate2d(np.zeros((4, 4)), np.zeros((2, 2)), mode="x"),
     ValueError, ["mode"]),
    ("correlate2d boundary",
     lambda: nc.correlate2d(np.zeros((4, 4)), np.zeros((2, 2)), boundary="x"), ValueError,
     ["boundary"]),
    ("correlate2d ndim", lambda: nc.correlate2d(np.zeros(4), np.zeros((2, 2))), ValueError, []),
    ("conv_output_size empty", lambda: nc.conv_output_size(3, 5), ValueError, ["kernel_size"]),
    ("conv_output_size stride", lambda: nc.conv_output_size(8, 3, stride=0), ValueError,
     ["'stride'"]),
    ("set_num_threads", lambda: nc.set_num_threads(0), ValueError, ["'n'"]),
]


@pytest.mark.parametrize("call,exc,needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_clear_error(call, exc, needles):
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    for needle in needles:
        assert needle in msg, f"{needle!r} missing from error message: {msg}"
    assert not isinstance(info.value, IndexError)


def test_unbatched_x_with_batched_dy_names_both():
    x = np.ones((3, 6, 6), np.float32)
    w = np.ones((2, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"'dy'.*unbatched argument 'x' of shape \(3, 6, 6\)"):
        nc.conv2d_backward(np.ones((1, 2, 4, 4), np.float32), x, w)


def test_a_channels_last_input_is_recognised_in_the_message():
    w = np.ones((2, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"looks like NHWC.*transpose\(0, 3, 1, 2\)"):
        nc.conv2d(np.ones((1, 6, 6, 3), np.float32), w)
    with pytest.raises(ValueError) as e:  # a plain channel mismatch says nothing of NHWC
        nc.conv2d(np.ones((1, 4, 6, 6), np.float32), w)
    assert "NHWC" not in str(e.value)
