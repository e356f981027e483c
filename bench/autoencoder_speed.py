"""Epoch time and validation quality: the reference notebook's Python-loop autoencoder vs ours, one run.

    python bench/autoencoder_speed.py                 # reference budget: 128 poems, 50 epochs of curriculum
    python bench/autoencoder_speed.py --epochs-scale 0.2 --poems 64   # a quick look

Same data (the embedded default's poems, 50-d GloVe, 50 words, seeded 128-poem sample and split), same
settings (hidden 64, bottleneck 16, batch 16, Adam 1e-3, clipping 1.0, curriculum 20/35/50 words over
15/20/15 epochs, masked MSE), same seed. Every implementation trains the whole curriculum; the figure is the
median wall time of the training steps of one full-length epoch (phase 3, 50 words), plus the validation
cosine / nearest-word recovery after training (decoded from z alone) and the mean-vector baseline's.

"reference" is a faithful rewrite of the reference notebook's poetry autoencoder: its VanillaRNNCell (two
``torch.mm`` per step), RNNEncoder and RNNDecoder looping over time steps in Python, the decoder fed its
own previous output, a TensorDataset of sequences padded to 50. One fix: its decoder loops over a fixed
``seq_len`` of 50, which cannot train on the curriculum's truncated batches (shape mismatch in the loss);
here it loops over the batch's length, as the notebook's curriculum intends. Ours: ``RNNAutoencoder`` in each
decoder mode with the same vanilla tanh cell, a GRU and the default config's LSTM.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_modules.poetry import PoetryEmbeddingsDataModule  # noqa: E402
from src.lightning_modules.curriculum_autoencoder import ReconstructionScores, curriculum_at, masked_mse  # noqa: E402
from src.models.rnn_autoencoder import RNNAutoencoder  # noqa: E402

CURRICULUM = [[20, 15], [35, 20], [50, 15]]


# -- the reference notebook, rewritten faithfully -------------------------------------------------------
class VanillaRNNCell(nn.Module):
    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size).uniform_(-(1 / input_size) ** 0.5,
                                                                                    (1 / input_size) ** 0.5))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size).uniform_(-(1 / hidden_size) ** 0.5,
                                                                                     (1 / hidden_size) ** 0.5))
        self.bias_ih = nn.Parameter(torch.zeros(hidden_size))
        self.bias_hh = nn.Parameter(torch.zeros(hidden_size))

    def forward(self, x, hidden):
        ih = torch.mm(x, self.weight_ih.t()) + self.bias_ih
        hh = torch.mm(hidden, self.weight_hh.t()) + self.bias_hh
        return torch.tanh(ih + hh)


class RNNEncoder(nn.Module):
    def __init__(self, input_size, hidden_size, bottleneck_dim):
        super().__init__()
        self.rnn_cell = VanillaRNNCell(input_size, hidden_size)
        self.compression = nn.Linear(hidden_size, bottleneck_dim)

    def forward(self, x, mask):
        batch_size, seq_len, _ = x.shape
        hidden = torch.zeros(batch_size, self.rnn_cell.hidden_size, device=x.device)
        hidden_states = []
        for t in range(seq_len):
            hidden = self.rnn_cell(x[:, t, :], hidden)
            hidden_states.append(hidden.unsqueeze(1))
        hidden_states = torch.cat(hidden_states, dim=1)
        lengths = mask.sum(dim=1) - 1
        final_hidden = hidden_states[range(batch_size), lengths]
        return self.compression(final_hidden), hidden_states


class RNNDecoder(nn.Module):
    def __init__(self, bottleneck_dim, hidden_size, output_size):
        super().__init__()
        self.output_size = output_size
        self.expansion = nn.Linear(bottleneck_dim, hidden_size)
        self.rnn_cell = VanillaRNNCell(output_size, hidden_size)
        self.output_projection = nn.Linear(hidden_size, output_size)

    def forward(self, z, seq_len):
        hidden = torch.tanh(self.expansion(z))
        current_input = torch.zeros(z.shape[0], self.output_size, device=z.device)
        outputs, hidden_states = [], []
        for _ in range(seq_len):
            hidden = self.rnn_cell(current_input, hidden)
            hidden_states.append(hidden.unsqueeze(1))
            output_t = self.output_projection(hidden)
            outputs.append(output_t.unsqueeze(1))
            current_input = output_t
        return torch.cat(outputs, dim=1), torch.cat(hidden_states, dim=1)


class ReferenceAutoencoder(nn.Module):
    def __init__(self, input_size=300, hidden_size=64, bottleneck_dim=16):
        super().__init__()
        self.encoder = RNNEncoder(input_size, hidden_size, bottleneck_dim)
        self.decoder = RNNDecoder(bottleneck_dim, hidden_size, input_size)

    def forward(self, x, mask):
        z, enc_hidden = self.encoder(x, mask)
        reconstructed, dec_hidden = self.decoder(z, x.shape[1])
        return reconstructed, z, {"encoder_hidden": enc_hidden, "decoder_hidden": dec_hidden}


def reference_loss(predictions, targets, mask):
    """The notebook's MaskedMSELoss."""
    mse = (predictions - targets) ** 2
    mask_expanded = mask.unsqueeze(-1)
    mse = mse * mask_expanded.float()
    return mse.sum() / (mask_expanded.sum() * mse.shape[-1] + 1e-8)


# -- training both the same way ---------------------------------------------------------------------------
def dense(dataset):
    """A split as the notebook holds it: X [N, 50, D] padded, mask [N, 50]."""
    batch = dataset.collate(list(range(len(dataset))))
    steps = dataset.ids.shape[1]
    x = torch.zeros(len(dataset), steps, batch.embeddings.size(2))
    x[:, : batch.embeddings.size(1)] = batch.embeddings
    mask = torch.arange(steps)[None] < batch.lengths[:, None]
    return x, mask, batch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train(name, dm, make, epochs_scale, lr, seed, device, curriculum=CURRICULUM, max_batches=None):
    """Train one implementation through the (scaled) curriculum -> validation scores and epoch times.
    max_batches: train on only the first N (shuffled) batches of each epoch (a time budget on a large corpus)."""
    torch.manual_seed(seed)
    model = make().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    reference = isinstance(model, ReferenceAutoencoder)
    x_train, mask_train, _ = dense(dm.datasets["train"])
    phases = [[max_len, max(1, round(epochs * epochs_scale))] for max_len, epochs in curriculum]
    epoch_times = {}
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(sum(e for _, e in phases)):
        _, max_len = curriculum_at(phases, epoch)
        model.train()
        if reference:
            loader = DataLoader(TensorDataset(x_train[:, :max_len], mask_train[:, :max_len]), batch_size=16,
                                shuffle=True, generator=generator)
        else:
            loader = DataLoader(dm.datasets["train"], batch_size=16, shuffle=True, generator=generator,
                                collate_fn=dm.datasets["train"].collate)
        batches = [[t.to(device) for t in b] if reference else type(b)(*(t.to(device) for t in b))
                   for b in itertools.islice(loader, max_batches)]
        synchronize(device)  # batches are built and moved outside the timed region, for both
        start = time.perf_counter()
        for batch in batches:
            optimizer.zero_grad()
            if reference:
                bx, bmask = batch
                reconstructed, _, _ = model(bx, bmask)
                loss = reference_loss(reconstructed, bx, bmask)
            else:
                batch = batch.truncate(max_len)
                loss = masked_mse(model(batch.embeddings, batch.lengths).reconstruction, batch.embeddings, batch.mask)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
            optimizer.step()
        synchronize(device)
        epoch_times.setdefault(max_len, []).append(time.perf_counter() - start)
    # Validation: full length, decoded from z alone.
    model.eval()
    x_val, mask_val, val = dense(dm.datasets["val"])
    x_val, mask_val, val = x_val.to(device), mask_val.to(device), type(val)(*(t.to(device) for t in val))
    scores, baseline = ReconstructionScores(), ReconstructionScores()
    table = torch.as_tensor(dm.vectors, device=device)
    norms = table.norm(dim=-1)
    unit, penalty = table / norms.clamp(min=1e-12)[:, None], torch.where(norms > 0, 0.0, float("-inf"))
    penalty[:2] = float("-inf")
    with torch.no_grad():
        if reference:
            prediction = model(x_val, mask_val)[0][:, : val.embeddings.size(1)]
        else:
            prediction = model(val.embeddings, val.lengths, teacher_forcing=False).reconstruction
        scores.update(prediction, val.embeddings, val.mask, val.tokens, unit, penalty)
        mean = torch.as_tensor(dm.mean_vector, device=device).expand_as(val.embeddings)
        baseline.update(mean, val.embeddings, val.mask, val.tokens, unit, penalty)
    result = {k: v.item() for k, v in scores.compute().items()}
    result["baseline_cosine"] = baseline.compute()["cosine"].item()
    result["baseline_word_recovery"] = baseline.compute()["word_recovery"].item()
    result["epoch_s"] = statistics.median(epoch_times[max(epoch_times)])
    result["train_s"] = sum(sum(v) for v in epoch_times.values())
    return result


def main(argv=None) -> dict:
    """Prints the table; returns ``{"setup": ..., "runs": {implementation: {"epoch_s", "speedup", "cosine", ...}}}``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poems", type=int, default=128, help="poems sampled from the corpus (reference: 128; 0: all)")
    parser.add_argument("--poems_path", default=None, help="poems file (default: the embedded default), e.g. "
                        "the full 17k-poem corpus as .jsonl.gz")
    parser.add_argument("--glove_path", default=None, help="GloVe file (default: the shipped 50-d rows), e.g. "
                        "glove.6B.50d.txt")
    parser.add_argument("--epochs-scale", type=float, default=1.0, help="scale the curriculum's 15/20/15 epochs")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--ablation", action="store_true", help="also train our modes without the curriculum")
    parser.add_argument("--max_batches", type=int, default=None,
                        help="train on only the first N batches of each epoch (a time budget for the full corpus)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dm = PoetryEmbeddingsDataModule(args.poems_path, args.glove_path, max_poems=args.poems or None, max_len=50,
                                    batch_size=16, val_fraction=0.1, seed=42)
    dm.setup("fit")
    dim = dm.vector_dim
    models = {
        "reference (notebook loop, rnn)": lambda: ReferenceAutoencoder(dim, 64, 16),
        "ours previous_output (rnn)": lambda: RNNAutoencoder(dim, 64, 16, "rnn", decoder_input="previous_output"),
        "ours teacher_forcing (rnn)": lambda: RNNAutoencoder(dim, 64, 16, "rnn", decoder_input="teacher_forcing"),
        "ours bottleneck (rnn)": lambda: RNNAutoencoder(dim, 64, 16, "rnn", decoder_input="bottleneck"),
        "ours bottleneck (gru)": lambda: RNNAutoencoder(dim, 64, 16, "gru", decoder_input="bottleneck"),
        # On CPU PyTorch runs LSTM training through oneDNN's fused kernels, RNN and GRU step by step.
        "ours bottleneck (lstm, default)": lambda: RNNAutoencoder(dim, 64, 16, "lstm", decoder_input="bottleneck"),
    }
    device = torch.device(args.device)
    setup = (f"device {device}{f' ({torch.cuda.get_device_name(device)})' if device.type == 'cuda' else ''}, "
             f"torch {torch.__version__}, {torch.get_num_threads()} threads; {dm.report['poems_used']} poems "
             f"({len(dm.datasets['train'])} train / {len(dm.datasets['val'])} val), 50 words, {dim}-d, hidden 64, "
             f"z 16, batch 16, lr {args.lr}, curriculum x{args.epochs_scale}"
             + (f", first {args.max_batches} batches per epoch" if args.max_batches else ""))
    print(setup)
    print(f"{'implementation':47s} {'epoch@50 s':>10s} {'speedup':>8s} {'train s':>8s} {'val cos':>8s} "
          f"{'recovery':>8s} {'base cos':>8s} {'base rec':>8s}")
    reference_epoch = None
    plan = [(name, make, CURRICULUM) for name, make in models.items()]
    if args.ablation:
        plan += [(f"{name}, no curriculum", make, [[50, 50]]) for name, make in models.items()
                 if name.startswith("ours")]
    runs = {}
    for name, make, curriculum in plan:
        r = train(name, dm, make, args.epochs_scale, args.lr, args.seed, device, curriculum, args.max_batches)
        reference_epoch = reference_epoch or r["epoch_s"]
        runs[name] = dict(r, speedup=reference_epoch / r["epoch_s"])
        print(f"{name:47s} {r['epoch_s']:10.4f} {reference_epoch / r['epoch_s']:7.2f}x {r['train_s']:8.1f} "
              f"{r['cosine']:8.4f} {r['word_recovery']:8.4f} {r['baseline_cosine']:8.4f} "
              f"{r['baseline_word_recovery']:8.4f}", flush=True)
    return {"setup": setup, "runs": runs}


if __name__ == "__main__":
    main()
