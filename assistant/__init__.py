"""onboard: an offline, on-device docs assistant.

Importing the package makes the whole process offline-by-default: no model hub, no telemetry.
These are set here (not only in tests) so every entry point - CLI, TUI, server, library use -
behaves the same on an air-gapped machine.
"""
import os

for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "ANONYMIZED_TELEMETRY": "False",  # chromadb
    # ONNX Runtime's 1DS telemetry (on by default in the PyPI wheels): DNS lookups of Microsoft's
    # collector and a device id + event database under ~/.cache/Microsoft/. Read when
    # onnxruntime initializes, so it has to be set before the first import (onnxruntime's Privacy.md).
    "ORT_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "WANDB_MODE": "disabled",  # trl/transformers report to wandb when it is installed
    "TOKENIZERS_PARALLELISM": "false",
    "DO_NOT_TRACK": "1",
}.items():
    os.environ.setdefault(_key, _value)

__version__ = "0.1.0"
