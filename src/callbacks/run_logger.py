"""The TensorBoard logger of train.py's runs: a run names what it trained, and its HParams carry its best metrics.

Lightning's default TensorBoardLogger writes every run to ``lightning_logs/version_N``, so TensorBoard's run list
says nothing about which run is the RNN; and its HParams entry has one metric, ``hp_metric``, logged as -1 unless
the model logs it itself. This subclass changes only that: the folder is ``lightning_logs/<model>-<cell>/version_N``
(``run_name``), ``hp_metric`` is off, and at each validation the run's best validation metrics so far (by the
checkpoint's ``monitor`` and ``mode``, or the latest without one) are written as ``best/<metric>`` scalars and
named as the HParams metrics, beside the model's and data's hyperparameters.

TensorBoard's HParams table shows five hyperparameter columns until you tick more, those marked as differing
between runs first. A run cannot know the other runs, so it marks what its own config changed: ``cell``, and
every hyperparameter whose value is not its class's default (``keep_gate_bias 3``, ``seq_length 50``).
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, Optional

from lightning_fabric.utilities.logger import _convert_params, _flatten_dict, _sanitize_params
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only

from src.callbacks.recurrent_modules import run_name


class RunLogger(TensorBoardLogger):
    """``TensorBoardLogger(save_dir, name)`` without ``hp_metric`` and Lightning's ``epoch`` scalar (its steps already
    say when), with ``best/<metric>`` HParams metrics: see the module docstring.

    monitor, mode: the metric that decides the best validation (the checkpoint's), and whether higher (``max``) or
    lower (``min``) is better; None: every validation is the latest best.
    extra_hparams: run settings beside the model's and data's hyperparameters (seed, clipping, learning rate).
    defaults: hyperparameter name -> its class's default value (``signature_defaults``), to mark the changed ones.
    """

    def __init__(self, save_dir: str, name: str, monitor: Optional[str] = None, mode: str = "max",
                 extra_hparams: Optional[dict[str, Any]] = None, defaults: Optional[dict[str, Any]] = None,
                 **kwargs):
        super().__init__(save_dir, name=name, default_hp_metric=False, **kwargs)
        self.monitor, self.mode = monitor, mode
        self.extra_hparams = dict(extra_hparams or {})
        self.defaults = dict(defaults or {})
        self.best: dict[str, float] = {}
        self._best_score: Optional[float] = None
        self._session_params: dict[str, Any] = dict(self.extra_hparams)
        self._session_written = False

    @rank_zero_only
    def log_hyperparams(self, params, metrics=None, step=None) -> None:
        super().log_hyperparams(params, metrics, step)  # hparams.yaml; no TensorBoard entry without metrics
        flat = _sanitize_params(_flatten_dict(_convert_params(params)))
        # LightningCLI's own bookkeeping (_instantiator, _class_path) is no hyperparameter.
        self._session_params = {**self.extra_hparams, **{k: v for k, v in flat.items() if not k.startswith("_")}}

    @rank_zero_only
    def log_metrics(self, metrics, step=None) -> None:
        metrics = {k: v for k, v in metrics.items() if k != "epoch"}
        super().log_metrics(metrics, step)
        validation = {k: float(v) for k, v in metrics.items() if k.startswith("val/")}
        if validation:
            self._update_best(validation, step)

    def _update_best(self, validation: dict[str, float], step: Optional[int]) -> None:
        score = validation.get(self.monitor) if self.monitor else None
        if score is not None and self._best_score is not None:
            better = score > self._best_score if self.mode == "max" else score < self._best_score
            if not better:
                return
        self._best_score = score
        self.best = {"best/" + k.replace("/", "_"): v for k, v in validation.items()}
        super().log_metrics(self.best, step)
        if not self._session_written:
            self._write_session()

    def _write_session(self) -> None:
        """The HParams entry: this run's hyperparameters (the changed ones marked as differing) and the names of
        its metrics (their values are the scalars' latest, which TensorBoard reads itself). Built by torch's
        ``hparams``, then the marks set on its experiment proto (tensorboard's own builder needs TensorFlow)."""
        from tensorboard.plugins.hparams import plugin_data_pb2
        from torch.utils.tensorboard.summary import hparams

        experiment, start, end = hparams(self._session_params, dict.fromkeys(self.best, 0.0))
        plugin = experiment.value[0].metadata.plugin_data
        content = plugin_data_pb2.HParamsPluginData.FromString(plugin.content)
        for info in content.experiment.hparam_infos:
            value = self._session_params[info.name]
            info.differs = info.name == "cell" or (info.name in self.defaults and info.name not in self.extra_hparams
                                                   and _differs(self.defaults[info.name], value))
        plugin.content = content.SerializeToString()
        writer = self.experiment._get_file_writer()
        for summary in (experiment, start, end):
            writer.add_summary(summary)
        self._session_written = True


def _differs(default: Any, value: Any) -> bool:
    """Whether a logged value (None and lists logged as text) is not its default."""
    try:
        if default == value:
            return False
    except Exception:  # values without a plain equality (tensors): compare as text
        pass
    return str(default) != str(value)


def signature_defaults(*classes: type) -> dict[str, Any]:
    """The default values of the ``__init__`` arguments of ``classes`` (later classes win on shared names)."""
    defaults: dict[str, Any] = {}
    for cls in classes:
        for name, parameter in inspect.signature(cls.__init__).parameters.items():
            if parameter.default is not inspect.Parameter.empty:
                defaults[name] = parameter.default
    return defaults


def optimizer_hparams(model_config) -> dict[str, Any]:
    """The optimizer's class name and learning rate from a model's LightningCLI config (``init_args.optimizer``, a
    callable our modules keep out of their hyperparameters), where it has them."""
    optimizer = _get(_get(model_config, "init_args"), "optimizer")
    name = str(_get(optimizer, "class_path") or "").rpartition(".")[2]
    lr = _get(_get(optimizer, "init_args"), "lr")
    return {k: v for k, v in (("optimizer", name), ("lr", lr)) if v not in (None, "")}


def _get(config, key: str):
    return config.get(key) if hasattr(config, "get") else None


def default_run_logger(model, datamodule, default_root_dir: Optional[str], checkpoint=None,
                       extra_hparams: Optional[dict[str, Any]] = None) -> RunLogger:
    """The logger train.py gives a run whose config chooses none: ``<root>/lightning_logs/<model>-<cell>/``,
    the best validation by ``checkpoint``'s monitor and mode (a ModelCheckpoint, or None)."""
    root = Path(default_root_dir or os.getcwd())
    monitor = getattr(checkpoint, "monitor", None)
    mode = getattr(checkpoint, "mode", "max")
    defaults = signature_defaults(*(type(m) for m in (model, datamodule) if m is not None))
    return RunLogger(str(root / "lightning_logs"), run_name(model), monitor, mode, extra_hparams, defaults)
