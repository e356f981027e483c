"""Silence the notes other libraries print on every run that tell a user nothing they can act on.

Each one is matched by its own text, so any other warning still shows:
- Lightning's "Tip: ... litlogger" advertisement, logged at every Trainer start;
- torch's ``isinstance(treespec, LeafSpec)`` deprecation, raised inside Lightning's own code;
- ModelCheckpoint's "The dirpath has changed" when a run resumes or evaluates a checkpoint: every run gets a new
  version folder, so the restored checkpoint callback's folder always differs;
- "TypedStorage is deprecated", raised by torch.load on int8 (quantized) tensors.
"""

from __future__ import annotations

import logging
import warnings

WARNINGS = (r".*isinstance\(treespec, LeafSpec\).*", r"The dirpath has changed from", r"TypedStorage is deprecated")
LOG_NOTES = {"pytorch_lightning.utilities.rank_zero": "Tip: For seamless cloud logging",
             "lightning.pytorch.utilities.rank_zero": "Tip: For seamless cloud logging"}


class _DropMessage(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def silence_third_party_notes() -> None:
    for pattern in WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name, text in LOG_NOTES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessage) and f.text == text for f in logger.filters):
            logger.addFilter(_DropMessage(text))
