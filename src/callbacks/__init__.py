"""Training-dynamics callbacks: add them from YAML (configs/dynamics.yaml); see docs/dynamics.md."""

from src.callbacks.gradient_flow_monitor import GradientFlowMonitor
from src.callbacks.gradient_norm_monitor import GradientNormMonitor
from src.callbacks.hidden_state_monitor import HiddenStateMonitor

__all__ = ["GradientFlowMonitor", "GradientNormMonitor", "HiddenStateMonitor"]
