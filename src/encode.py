"""Encode poems into the latent space of a trained CurriculumAutoencoder, from the checkpoint alone.

    python -m src.encode --ckpt_path CKPT --input poems.jsonl --output DIR [--glove_path glove.6B.300d.txt]

Writes ``DIR/latents.npy`` (float32 ``[N, Z]``, one row per encoded poem), ``DIR/metadata.tsv`` (title, author,
words: same row order) and ``DIR/projector/`` for TensorBoard's projector (``tensorboard --logdir DIR``, then
the PROJECTOR tab: PCA, t-SNE or UMAP, coloured or searched by title and author).

Words are looked up in the GloVe file the checkpoint was trained with (its recorded path, tried as stored and
relative to the project root) or in ``--glove_path``; if neither can be found, in the vocabulary the
checkpoint stores (the training poems' words). Poems with no known word are skipped and counted.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from data_modules.glove import cached_glove, check_glove_path
from data_modules.poem_corpus import corpus_from_poems
from data_modules.poem_files import Poem, read_poems
from data_modules.poetry import PoemSequences, resolve_recorded_path
from src.utils.errors import UserInputError, check_positive, exit_on_user_error
from src.utils.output_files import check_output, written_atomically
from src.utils.third_party_notes import silence_third_party_notes

OUTPUT_FILES = ("latents.npy", "metadata.tsv")  # and the projector/ folder


def glove_lookup(model, glove_path: Optional[str], cache_dir: Optional[str]):
    """``words -> (found, vectors)`` from the GloVe file (checked against the model's input size), else from
    the checkpoint's own vocabulary. Returns the lookup and a line saying which source it is."""
    dim = model.hparams.input_dim
    path = check_glove_path(glove_path) if glove_path else (
        resolve_recorded_path(model.glove_path) if model.glove_path else None)
    if path is not None:
        def lookup(words: set[str]):
            found, vectors = cached_glove(path, words, model.glove_dim, cache_dir)
            if vectors.shape[1] != dim:
                raise UserInputError(f"GloVe file {path} has {vectors.shape[1]}-d vectors but the checkpoint's model "
                                     f"reads {dim}-d ones; pass the --glove_path it was trained with "
                                     f"({model.glove_path or 'see its config'})")
            return found, vectors
        return lookup, f"GloVe file {path}"
    if not model.vocabulary:
        raise UserInputError("the checkpoint stores no vocabulary and its GloVe file is unknown; pass --glove_path")
    if model.glove_path:
        warnings.warn(f"GloVe file {model.glove_path} (recorded in the checkpoint) not found; using the checkpoint's "
                      f"{len(model.vocabulary) - 2} training words (pass --glove_path for others)", stacklevel=2)
    row = {w: i for i, w in enumerate(model.vocabulary) if i >= 2}
    table = model.vocab_vectors.cpu().numpy()

    def lookup(words: set[str]):
        found = [w for w in words if w in row]
        return found, table[[row[w] for w in found]].reshape(len(found), table.shape[1])
    return lookup, "the checkpoint's vocabulary"


@torch.no_grad()
def encode_poems(model, poems: list[Poem], glove_path: Optional[str] = None, batch_size: int = 256,
                 cache_dir: Optional[str] = ".cache/rnn_lab",
                 source: str = "input") -> tuple[np.ndarray, list[Poem], list[int], dict]:
    """-> (latents ``[N, Z]``, encoded poems, their word counts, report). Same tokenizer, OOV policy and
    ``max_len`` as training."""
    lookup, where = glove_lookup(model, glove_path, cache_dir)
    settings = model.tokenizer
    corpus = corpus_from_poems(poems, lookup, settings["max_len"], settings["oov"], 1, source)
    data = PoemSequences(corpus.ids, corpus.lengths, corpus.table)
    was_training = model.training
    model.eval()
    codes = [model.encode(data.collate(list(range(s, min(s + batch_size, len(data))))))
             for s in range(0, len(data), batch_size)]
    model.train(was_training)
    latents = torch.cat(codes).float().cpu()
    if not torch.isfinite(latents).all():
        raise UserInputError(f"the model gives non-finite latents for {int((~torch.isfinite(latents)).any(1).sum())} "
                             "poem(s): its weights have diverged; use an earlier checkpoint")
    report = dict(corpus.report, source=where)
    return latents.numpy(), corpus.poems, corpus.lengths.tolist(), report


def write_outputs(output_dir: str, latents: np.ndarray, poems: list[Poem], words: list[int],
                  projector: bool = True) -> Path:
    from src.lightning_modules.curriculum_autoencoder import clean

    out = Path(output_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    with written_atomically(out / "latents.npy", "latents") as temporary, open(temporary, "wb") as f:
        np.save(f, latents.astype(np.float32))
    rows = ["title\tauthor\twords"] + [f"{clean(p.title)}\t{clean(p.author)}\t{n}" for p, n in zip(poems, words)]
    with written_atomically(out / "metadata.tsv", "metadata") as temporary:
        temporary.write_text("\n".join(rows) + "\n", encoding="utf-8")
    if projector:
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(str(out / "projector")) as writer:
            writer.add_embedding(torch.from_numpy(latents), metadata=[[clean(p.title), clean(p.author)] for p in poems],
                                 metadata_header=["title", "author"], tag="poems")
    return out


def encode_file(ckpt_path: str, input_path: str, output_dir: str, glove_path: Optional[str] = None,
                batch_size: int = 256, projector: bool = True) -> dict:
    from src.lightning_modules.curriculum_autoencoder import CurriculumAutoencoder

    check_positive(batch_size=batch_size)
    check_output(output_dir, {"--input": input_path, "--ckpt_path": ckpt_path, "--glove_path": glove_path},
                 folder=True, writes=OUTPUT_FILES)
    model = CurriculumAutoencoder.from_checkpoint(ckpt_path)
    latents, poems, words, report = encode_poems(model, read_poems(input_path), glove_path, batch_size,
                                                 source=input_path)
    write_outputs(output_dir, latents, poems, words, projector)
    return dict(report, encoded=len(poems), dim=latents.shape[1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", required=True, help="a CurriculumAutoencoder checkpoint (.ckpt)")
    parser.add_argument("--input", required=True, help="poems: .jsonl[.gz] (text, title, author), a folder of .txt "
                                                       "files, or one .txt with poems split by 2+ blank lines")
    parser.add_argument("--output", required=True, help="folder for latents.npy, metadata.tsv and projector/")
    parser.add_argument("--glove_path", default=None, help="GloVe file to use instead of the one recorded in the "
                                                           "checkpoint (same dimension)")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--no_projector", action="store_true", help="skip the TensorBoard projector files")
    args = parser.parse_args(argv)
    silence_third_party_notes()
    with exit_on_user_error():
        try:
            report = encode_file(args.ckpt_path, args.input, args.output, args.glove_path, args.batch_size,
                                 not args.no_projector)
        except OSError as e:  # the projector's files, written by TensorBoard's own writer
            raise UserInputError(f"could not write to {args.output} ({e.strerror or e})") from None
    skipped = report["no_known_words"]
    print(f"wrote {report['encoded']} latent vectors ({report['dim']}-d) to {args.output}/latents.npy with "
          f"metadata.tsv; words from {report['source']} (coverage {100 * report['coverage']:.1f}%)"
          + (f"; skipped {skipped} poem(s) with no known word" if skipped else ""))


if __name__ == "__main__":
    main()
