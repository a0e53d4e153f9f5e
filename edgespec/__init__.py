"""edgespec: speculative decoding on OpenVINO for AI PCs and edge devices."""

__version__ = "0.1.0"
