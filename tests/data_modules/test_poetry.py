"""Poetry data: GloVe reading (plain/gz/zip), poem readers, OOV policy, batches, the notebook bundle, bad input."""

from __future__ import annotations

import gzip
import json
import zipfile

import numpy as np
import pytest
import torch

from data_modules.glove import cached_glove, read_glove
from data_modules.poem_bundle import load_bundle
from data_modules.poem_corpus import effective_dims
from data_modules.poem_files import read_poems, tokenize_poem
from data_modules.poetry import DEFAULT_GLOVE, DEFAULT_POEMS, PoetryEmbeddingsDataModule
from src.utils.errors import UserInputError

WORDS = ["the", "sea", "is", "wide", "night", "long", "stars", "cold", "do", "n't", "'s", "poet"]


def vector(i: int, dim: int = 4) -> list[float]:
    return [round(i + 0.25 * k, 2) for k in range(dim)]


def glove_text(words=WORDS, dim: int = 4) -> str:
    return "".join(f"{w} {' '.join(map(str, vector(i, dim)))}\n" for i, w in enumerate(words, start=1))


@pytest.fixture
def glove_file(tmp_path):
    path = tmp_path / "glove.4d.txt"
    path.write_text(glove_text(), encoding="utf-8")
    return path


def write_poems(path, texts, titles=None):
    with open(path, "w", encoding="utf-8") as f:
        for i, text in enumerate(texts):
            title = titles[i] if titles else f"t{i}"
            f.write(json.dumps({"title": title, "author": f"a{i}", "text": text}) + "\n")
    return path


# -- tokenizer ---------------------------------------------------------------------------------------------
def test_tokenizer_splits_clitics_like_glove_and_drops_punctuation_and_digits():
    assert tokenize_poem("Don\u2019t the Poet's SEA, o'er 12 waves--") == ["do", "n't", "the", "poet", "'s", "sea",
                                                                          "o'er", "waves"]


# -- GloVe -------------------------------------------------------------------------------------------------
def test_read_glove_plain_gz_and_zip_give_the_same_rows(tmp_path, glove_file):
    words, vectors = read_glove(glove_file)
    assert words == WORDS and vectors.dtype == np.float32 and vectors.shape == (len(WORDS), 4)
    np.testing.assert_allclose(vectors[1], vector(2))
    gz = tmp_path / "glove.txt.gz"
    gz.write_bytes(gzip.compress(glove_text().encode()))
    archive = tmp_path / "glove.6B.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("glove.6B.4d.txt", glove_text())
        z.writestr("glove.6B.6d.txt", glove_text(dim=6))
    for path, dim in ((gz, None), (archive, 4)):
        w, v = read_glove(path, dim=dim)
        assert w == words
        np.testing.assert_array_equal(v, vectors)
    w6, v6 = read_glove(archive, words={"sea", "cold", "absent"}, dim=6)
    assert w6 == ["sea", "cold"] and v6.shape == (2, 6)
    with pytest.raises(UserInputError, match="glove_dim"):
        read_glove(archive)  # two members, no dimension: ask which
    with pytest.raises(UserInputError, match="no 300-d member"):
        read_glove(archive, dim=300)


def test_read_glove_names_the_line_of_inconsistent_length(tmp_path):
    lines = glove_text().splitlines()
    lines[6] = lines[6].rsplit(" ", 1)[0]  # line 7 lost its last number
    path = tmp_path / "bad.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserInputError, match="line 7 has 3 numbers where line 1 has 4"):
        read_glove(path)


def test_read_glove_rejects_non_utf8_non_numbers_and_wrong_dimension(tmp_path, glove_file):
    latin = tmp_path / "latin.txt"
    latin.write_bytes(glove_text().encode() + b"caf\xe9 1 2 3 4\n")
    with pytest.raises(UserInputError, match="not UTF-8"):
        read_glove(latin)
    word = tmp_path / "word.txt"
    word.write_text(glove_text() + "sky 1 2 x 4\n")
    with pytest.raises(UserInputError, match="line 13.*non-number"):
        read_glove(word)
    with pytest.raises(UserInputError, match="4-d vectors"):
        read_glove(glove_file, dim=300)


def test_cached_glove_writes_a_compact_array_and_reads_it_back(tmp_path, glove_file):
    cache = tmp_path / "cache"
    first = cached_glove(glove_file, {"sea", "stars", "nope"}, cache_dir=str(cache))
    assert [p.suffix for p in cache.iterdir()] == [".npz"]
    second = cached_glove(glove_file, {"sea", "stars", "nope"}, cache_dir=str(cache))
    assert first[0] == second[0] == ["sea", "stars"]
    np.testing.assert_array_equal(first[1], second[1])


# -- poem files --------------------------------------------------------------------------------------------
def test_read_poems_from_jsonl_folder_and_blank_line_separated_text(tmp_path):
    jsonl = write_poems(tmp_path / "p.jsonl", ["the sea", "the night"], ["One", "Two"])
    poems = read_poems(jsonl)
    assert [(p.title, p.author, p.text) for p in poems] == [("One", "a0", "the sea"), ("Two", "a1", "the night")]
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "b.txt").write_text("second poem")
    (folder / "a.txt").write_text("first poem\n")
    assert [(p.title, p.text) for p in read_poems(folder)] == [("a", "first poem"), ("b", "second poem")]
    text = tmp_path / "many.txt"
    text.write_text("Title A\nline one\n\nstanza two\n\n\nTitle B\nonly line\n \n\n\n\nTitle C\nx\n")
    poems = read_poems(text)
    assert [p.title for p in poems] == ["Title A", "Title B", "Title C"]
    assert poems[0].text == "Title A\nline one\n\nstanza two"  # one blank line is a stanza break, not a new poem


def test_read_poems_bad_input(tmp_path):
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"text": "caf\xe9"}\n')
    with pytest.raises(UserInputError, match="not UTF-8: invalid byte 0xe9 at line 1, column 14"):
        read_poems(latin)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(UserInputError, match="line 2 of .*broken.jsonl is not valid JSON"):
        read_poems(broken)
    no_text = tmp_path / "no_text.jsonl"
    no_text.write_text('{"body": "ok"}\n')
    with pytest.raises(UserInputError, match="line 1 of .*no_text.jsonl has no 'text' field"):
        read_poems(no_text)
    with pytest.raises(UserInputError, match="poems not found"):
        read_poems(tmp_path / "absent.jsonl")


# -- the DataModule ----------------------------------------------------------------------------------------
def test_batches_hold_glove_vectors_mask_ids_and_lengths(tmp_path, glove_file, cache_dir):
    texts = ["the sea is wide zzz and the night is long", "stars cold", "qqq www", "the poet's sea don't",
             "the sea the sea", "night night long long", "the cold stars", "wide wide sea"]
    poems = write_poems(tmp_path / "p.jsonl", texts)
    dm = PoetryEmbeddingsDataModule(str(poems), str(glove_file), max_len=6, min_tokens=2, val_fraction=0.25,
                                    batch_size=8, cache_dir=cache_dir)
    dm.setup("fit")
    assert dm.vector_dim == 4
    # "qqq www" has no known word: dropped and counted; 7 poems remain, 2 for validation.
    assert dm.report["no_known_words"] == 1 and dm.report["poems_used"] == 7 and dm.report["val"] == 2
    tokens = [t for text in texts for t in tokenize_poem(text)]
    assert dm.report["coverage"] == pytest.approx(sum(t in WORDS for t in tokens) / len(tokens))
    batch = next(iter(dm.train_dataloader()))
    B, T, D = batch.embeddings.shape
    assert (B, D) == (5, 4) and T == int(batch.lengths.max()) <= 6
    assert torch.equal(batch.mask, torch.arange(T)[None] < batch.lengths[:, None])
    glove = dict(zip(*read_glove(glove_file)))
    for row in range(B):
        for t in range(T):
            word = dm.vocabulary[batch.tokens[row, t]]
            expected = glove[word] if batch.mask[row, t] else np.zeros(4)
            np.testing.assert_allclose(batch.embeddings[row, t].numpy(), expected)
    first = [dm.split_poems["train"][int(i)].text for i in batch.index]
    assert any(t.startswith("the sea is wide zzz") for t in first)
    long_poem = next(r for r in range(B) if first[r].startswith("the sea is wide"))
    # OOV "zzz" dropped, then cut to max_len=6 words.
    assert [dm.vocabulary[i] for i in batch.tokens[long_poem, :6]] == ["the", "sea", "is", "wide", "the", "night"]
    again = PoetryEmbeddingsDataModule(str(poems), str(glove_file), max_len=6, min_tokens=2, val_fraction=0.25,
                                       cache_dir=cache_dir)
    again.setup("fit")
    assert [p.text for p in again.split_poems["val"]] == [p.text for p in dm.split_poems["val"]]  # seeded split


def test_oov_zero_keeps_unknown_words_as_zero_vectors(tmp_path, glove_file, cache_dir):
    poems = write_poems(tmp_path / "p.jsonl", ["the zzz sea", "stars cold night", "the sea"])
    dm = PoetryEmbeddingsDataModule(str(poems), str(glove_file), oov="zero", min_tokens=1, val_fraction=0.3,
                                    cache_dir=cache_dir)
    dm.setup("fit")
    rows = {dm.split_poems["train"][i].text: i for i in range(2)} | {dm.split_poems["val"][0].text: "val"}
    split = "train" if rows.get("the zzz sea") != "val" else "val"
    data = dm.datasets[split]
    row = [p.text for p in dm.split_poems[split]].index("the zzz sea")
    batch = data.collate([row])
    assert [dm.vocabulary[i] for i in batch.tokens[0]] == ["the", "<unk>", "sea"]
    assert batch.mask[0].all() and torch.equal(batch.embeddings[0, 1], torch.zeros(4))


def test_unusable_poem_files_raise(tmp_path, glove_file, cache_dir):
    unknown = write_poems(tmp_path / "u.jsonl", ["qqq www", "zzz"])
    with pytest.raises(UserInputError, match="no usable poems.*2 with no word found"):
        PoetryEmbeddingsDataModule(str(unknown), str(glove_file), cache_dir=cache_dir).setup("fit")
    short = write_poems(tmp_path / "s.jsonl", ["the sea", "stars"])
    with pytest.raises(UserInputError, match="fewer than min_tokens=5"):
        PoetryEmbeddingsDataModule(str(short), str(glove_file), cache_dir=cache_dir).setup("fit")
    with pytest.raises(UserInputError, match="GloVe file not found"):
        PoetryEmbeddingsDataModule(str(short), str(tmp_path / "none.txt"), cache_dir=cache_dir).setup("fit")


def test_embedded_default_loads_offline(cache_dir):
    assert DEFAULT_POEMS.is_file() and DEFAULT_GLOVE.is_file() and DEFAULT_GLOVE.stat().st_size < 4_000_000
    dm = PoetryEmbeddingsDataModule(max_poems=128, cache_dir=cache_dir)
    dm.setup("fit")
    assert dm.vector_dim == 50 and dm.report["poems_used"] == 128 and dm.report["coverage"] > 0.97
    assert 5 <= dm.report["pca_dim_90"] <= dm.report["pca_dim_95"] <= 50
    assert dm.recorded_glove_path == "data/glove/glove.6B.50d.poems-default.txt.gz"


def test_effective_dims_counts_components_of_the_variance():
    rng = np.random.default_rng(0)
    # Variances 50, 30, 12, 6, 2 (of 100) along rotated axes: cumulative 50, 80, 92, 98, 100%.
    rotation = np.linalg.qr(rng.standard_normal((5, 5)))[0]
    x = (rng.standard_normal((20000, 5)) * np.sqrt([50, 30, 12, 6, 2])) @ rotation + 3.0
    (d90, d95), curve = effective_dims(x.astype(np.float32))
    assert (d90, d95) == (3, 4) and curve[-1] == pytest.approx(1.0)


# -- the reference notebook's bundle ----------------------------------------------------------------------
def write_bundle(folder, n=6, t=5, d=3, v=9, tag="latest"):
    rng = np.random.default_rng(1)
    matrix = rng.standard_normal((v, d)).astype(np.float32)
    tokens = rng.integers(0, v, (n, t))
    lengths = np.array([5, 3, 4, 1, 2, 5])[:n]
    mask = np.arange(t)[None] < lengths[:, None]
    seqs = np.where(mask[..., None], matrix[tokens], 0).astype(np.float32)
    folder.mkdir(exist_ok=True)
    for name, array in (("embedding_sequences", seqs), ("attention_masks", mask), ("token_sequences", tokens),
                        ("embedding_matrix", matrix)):
        np.save(folder / f"{name}_{tag}.npy", array)
    (folder / f"metadata_{tag}.json").write_text(json.dumps({"titles": [f"p{i}" for i in range(n)]}))
    return seqs, mask, tokens, matrix


def test_bundle_loads_into_the_same_batches(tmp_path):
    seqs, mask, tokens, matrix = write_bundle(tmp_path / "b", tag="20240101")
    corpus = load_bundle(tmp_path / "b")  # the only tag present is used
    assert corpus.lengths.tolist() == mask.sum(1).tolist() and corpus.poems[2].title == "p2"
    np.testing.assert_allclose(corpus.table[corpus.ids][mask], seqs[mask])
    dm = PoetryEmbeddingsDataModule(bundle_path=str(tmp_path / "b"), val_fraction=0.3, batch_size=10)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.embeddings.shape[2] == 3 and dm.vector_dim == 3


def test_bundle_with_mismatched_shapes_raises(tmp_path):
    write_bundle(tmp_path / "b")
    np.save(tmp_path / "b" / "attention_masks_latest.npy", np.ones((6, 4), dtype=bool))
    with pytest.raises(UserInputError, match="bundle shapes do not match.*attention_masks \\(6, 4\\)"):
        load_bundle(tmp_path / "b")
    seqs, mask, tokens, matrix = write_bundle(tmp_path / "c")
    np.save(tmp_path / "c" / "embedding_matrix_latest.npy", matrix[::-1].copy())
    with pytest.raises(UserInputError, match="not the embedding_matrix rows"):
        load_bundle(tmp_path / "c")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="lacks embedding_sequences"):
        load_bundle(tmp_path / "empty")
