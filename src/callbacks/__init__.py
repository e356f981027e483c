"""Training-dynamics callbacks: add them from YAML (configs/dynamics.yaml); see docs/dynamics.md."""

from src.callbacks.grad_norm import GradientNormMonitor
from src.callbacks.gradient_flow import GradientFlowMonitor
from src.callbacks.hidden_state import HiddenStateMonitor

__all__ = ["GradientFlowMonitor", "GradientNormMonitor", "HiddenStateMonitor"]
