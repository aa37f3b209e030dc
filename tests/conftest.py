import os
import tempfile

from hypothesis import HealthCheck, settings

# Numba compiles each kernel once per dtype; the first example of a test pays for it, so
# hypothesis' per-example deadline is off.  NBCONV_HYPOTHESIS_PROFILE=thorough runs more cases.
settings.register_profile(
    "ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("NBCONV_HYPOTHESIS_PROFILE", "ci"))

# The tests see the "auto" rules, never a developer's tuned choices (nbconv.tune's file beside
# the kernel cache) or autotuning; tests of tuning point NBCONV_TUNE_DIR elsewhere themselves.
os.environ["NBCONV_TUNE_DIR"] = tempfile.mkdtemp(prefix="nbconv-tests-tune-")
os.environ.pop("NBCONV_AUTOTUNE", None)


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_conv_plans():
    """Each test starts with no cached convolution plans: tests patch the thresholds of
    nbconv.conv.plan, and a plan cached by another test would hide the patch."""
    from nbconv.conv import convplan

    convplan.clear_cache()
    yield
    convplan.clear_cache()
