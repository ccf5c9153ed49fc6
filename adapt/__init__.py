"""adapt: continual multimodal instruction tuning with dynamic data selection."""

__version__ = "0.1.0"
