"""Measured reproductions of the classic RNN experiments (reference notebooks 001 and 002), one command each:

    python -m src.experiments.seq_length       # IMDB accuracy vs. review length, RNN / LSTM / GRU
    python -m src.experiments.gradient_flow    # per-timestep gradient norms at length 200, RNN vs. LSTM
    python -m src.experiments.hidden_dynamics  # hidden- and cell-state norms over a review, saturation
    python -m src.experiments.memory           # remember the first token: accuracy vs. delay, 3 seeds
    python -m src.experiments.initialization   # vanilla RNN recurrent inits on the memory task

Each trains through Lightning (a TensorBoard log per run under ``--log-dir``) and writes ``report.md`` (tables
of the measured numbers, the settings, seeds, machine and wall time), ``results.json`` (the same numbers, for
comparison across runs) and PNG plots to ``--output`` (default ``reports/<name>/``). ``--quick`` is a tiny CPU
variant that finishes in seconds. Numbers come from the runs; the same seeds on the same machine reproduce them
exactly (one CPU thread, ``deterministic=True``, seeded data).

``runner.py`` holds the command line and one training run they share, ``report.py`` the machine description and
the markdown/JSON/PNG writers; each experiment reads top to bottom on its own.
"""
