"""The commands' outputs under faults: an output that is one of the inputs, a folder where a file goes (and the
reverse), a path under a file, and a disk that fills up mid-write. One line, exit 2, and every input and every
previous output byte for byte as it was."""

import errno
import os
import threading

import pytest

from src.encode import main as encode_main
from src.explain import main as explain_main
from src.export import main as export_main
from src.predict import main as predict_main
from tests.faults.fault_harness import assert_one_line_error, checksums, run_command


@pytest.fixture
def inputs(tmp_path, classifier_ckpt):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "reviews.txt").write_text("a fine film\nawful\n")
    (folder / "model.ckpt").write_bytes(classifier_ckpt.read_bytes())
    (folder / "poems.jsonl").write_text('{"text": "red rose", "title": "t", "author": "a"}\n')
    (folder / "afile").write_text("not a folder")
    os.symlink(folder / "reviews.txt", folder / "link.txt")
    return folder


def predict(folder, output):
    return ["--ckpt_path", folder / "model.ckpt", "--input", folder / "reviews.txt", "--output", output]


CASES = {
    # command, args from the inputs folder, phrase
    "predict over its input": (predict_main, lambda f: predict(f, f / "reviews.txt"), "would overwrite --input"),
    "predict over its checkpoint": (predict_main, lambda f: predict(f, f / "model.ckpt"), "overwrite --ckpt_path"),
    "predict over a link to its input": (predict_main, lambda f: predict(f, f / "link.txt"), "overwrite --input"),
    "predict into a folder": (predict_main, lambda f: predict(f, f), "is a folder"),
    "predict under a file": (predict_main, lambda f: predict(f, f / "afile" / "p.csv"), "afile is a file"),
    "predict batch size 0": (predict_main, lambda f: [*predict(f, f / "p.csv"), "--batch_size", "0"], "batch_size=0"),
    "explain over its checkpoint": (explain_main, lambda f: ["--ckpt_path", f / "model.ckpt", "--text", "fine",
                                                             "--output", f / "model.ckpt"], "overwrite --ckpt_path"),
    "explain into a folder": (explain_main, lambda f: ["--ckpt_path", f / "model.ckpt", "--text", "fine",
                                                       "--output", f], "is a folder"),
    "export over its checkpoint": (export_main, lambda f: ["--ckpt_path", f / "model.ckpt", "--output",
                                                           f / "model.ckpt"], "is --ckpt_path"),
    "export into a file": (export_main, lambda f: ["--ckpt_path", f / "model.ckpt", "--output", f / "reviews.txt"],
                           "is a file"),
    "export under a file": (export_main, lambda f: ["--ckpt_path", f / "model.ckpt", "--output", f / "afile" / "x"],
                            "afile is a file"),
    "encode over its input folder": (encode_main, lambda f: ["--ckpt_path", f / "model.ckpt", "--input", f,
                                                             "--output", f], "--output"),
    "encode into a file": (encode_main, lambda f: ["--ckpt_path", f / "model.ckpt", "--input", f / "poems.jsonl",
                                                   "--output", f / "poems.jsonl"], "--output"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_an_output_that_would_replace_an_input_or_cannot_be_written_is_refused(name, inputs, capfd):
    main, args, phrase = CASES[name]
    before = checksums(inputs)
    assert_one_line_error(*run_command(capfd, main, args(inputs)), phrase)
    assert checksums(inputs) == before


def disk_full_for(monkeypatch, suffixes):
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith(suffixes):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)


def test_a_full_disk_leaves_the_previous_predictions_whole(inputs, tmp_path, monkeypatch, capfd):
    out = tmp_path / "out"
    out.mkdir()
    (out / "p.csv").write_text("text,probability,label\nold,0.5,positive\n")
    before = checksums(inputs, out)
    disk_full_for(monkeypatch, ".csv")
    assert_one_line_error(*run_command(capfd, predict_main, predict(inputs, out / "p.csv")), "No space left")
    assert checksums(inputs, out) == before and sorted(p.name for p in out.iterdir()) == ["p.csv"]


def test_a_full_disk_leaves_a_previous_export_whole(inputs, tmp_path, monkeypatch, capfd):
    """export writes model.onnx and vocab.json together or not at all (a full disk used to leave half a model)."""
    out = tmp_path / "export"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"the previous export")
    (out / "vocab.json").write_text("{}")

    def export_onnx(net, path):  # the exporter's own write meets the full disk half-way
        path.write_bytes(b"half a mod")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("src.export.export_onnx", export_onnx)
    before = checksums(inputs, out)
    code, lines = run_command(capfd, export_main, ["--ckpt_path", inputs / "model.ckpt", "--output", out])
    assert_one_line_error(code, lines, "No space left", "nothing in it was replaced")
    assert checksums(inputs, out) == before and sorted(p.name for p in out.iterdir()) == ["model.onnx", "vocab.json"]


def test_a_link_or_a_device_as_output_is_written_through_not_replaced(inputs, tmp_path, capfd):
    """The atomic rename must not cut a symbolic link to the output, nor replace /dev/stdout by a file."""
    (tmp_path / "real.csv").write_text("old\n")
    os.symlink(tmp_path / "real.csv", tmp_path / "link.csv")
    code, lines = run_command(capfd, predict_main, predict(inputs, tmp_path / "link.csv"))
    assert code == 0 and (tmp_path / "link.csv").is_symlink()
    assert (tmp_path / "real.csv").read_text().startswith("text,probability,label")
    fifo = tmp_path / "pipe"  # what /dev/stdout is in `... --output /dev/stdout | cat`
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    code, lines = run_command(capfd, predict_main, predict(inputs, fifo))
    reader.join(timeout=30)
    assert code == 0 and received and received[0].startswith("text,probability,label"), lines
    assert fifo.is_fifo() and not list(tmp_path.glob(".*.tmp"))
