"""The convolution kernels, one module per kernel family (their drivers are in
:mod:`nbconv.conv`)."""
