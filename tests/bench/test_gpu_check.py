"""bench/gpu_check.py: the one-call GPU check runs end to end here in --smoke mode (so it is never dead code when a
GPU comes), a step that fails or outlasts its budget is a row with its reason, not the end of the check."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch

from tests.common import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import gpu_check  # noqa: E402


@pytest.mark.slow
def test_smoke_runs_every_step_and_writes_the_summary(tmp_path):
    result = subprocess.run([sys.executable, "bench/gpu_check.py", "--smoke", "--out", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    steps = {s["name"]: s for s in summary["steps"]}
    assert list(steps) == [step.name for step in gpu_check.STEPS]
    assert {s["status"] for s in steps.values()} == {"ok"}, {n: s["reason"] for n, s in steps.items()}
    tests = steps["gpu_tests"]["figures"]
    assert tests["failed"] == tests["errors"] == 0 and tests["passed"] + tests["skipped"] >= 5
    if not torch.cuda.is_available():
        assert tests["passed"] == 0 and "no CUDA device" in tests["skip_reasons"][0]
    assert steps["imdb_fp32"]["figures"]["ratio_samples_per_s"] > 0
    assert steps["imdb_bf16_b256"]["figures"]["setup"]["batch_size"] == 256
    assert steps["imdb_time_to_87"]["figures"]["validations"]
    assert set(steps["callback_overhead"]["figures"]) >= {"default", "every step", "scalars only"}
    assert len(steps["autoencoder_speed"]["figures"]["runs"]) == 6
    assert steps["char_lm_throughput"]["figures"]["ratio"] > 0
    table = (tmp_path / "gpu_check.md").read_text()
    assert table.count("| ok |") == len(gpu_check.STEPS) and "(--smoke: tiny data)" in table
    assert (tmp_path / "gpu_tests.xml").is_file() and table in result.stdout


def context(tmp_path) -> gpu_check.Context:
    return gpu_check.Context(smoke=True, device="cpu", out=tmp_path, work=tmp_path, cache=tmp_path / "cache")


def test_a_failing_or_overlong_step_is_a_row_with_its_reason(tmp_path):
    def fails(ctx):
        raise ValueError("the bench broke\nover two lines")

    def exits(ctx):
        raise SystemExit(2)  # a bench's one-line user error

    def sleeps(ctx):
        time.sleep(30)
        return {}

    def works(ctx):
        return {"rate": torch.tensor(2.5), "name": ctx.device}

    ctx = context(tmp_path)
    step = lambda run: gpu_check.Step("s", "what", 5, run, lambda f: f"rate {f['rate']}")  # noqa: E731
    failed = gpu_check.run_step(step(fails), ctx, 5)
    assert (failed.status, failed.reason) == ("failed", "ValueError: the bench broke over two lines")
    assert gpu_check.run_step(step(exits), ctx, 5).reason.startswith("exited with status 2")
    began = time.monotonic()
    slow = gpu_check.run_step(step(sleeps), ctx, 1.0)
    assert slow.status == "timeout" and "budget of 1 s" in slow.reason and time.monotonic() - began < 10
    ok = gpu_check.run_step(step(works), ctx, 30)
    assert (ok.status, ok.figures, ok.summary) == ("ok", {"rate": 2.5, "name": "cpu"}, "rate 2.5")


def test_pytests_report_is_counted(tmp_path):
    report = tmp_path / "report.xml"
    report.write_text("""<testsuites><testsuite>
      <testcase classname="tests.gpu.test_a" name="test_ok"/>
      <testcase classname="tests.gpu.test_a" name="test_bad"><failure message="boom"/></testcase>
      <testcase classname="tests.gpu.test_b" name="test_no_gpu"><skipped message="no CUDA"/></testcase>
      <testcase classname="tests.gpu.test_b" name="test_no_gpu2"><skipped message="no CUDA"/></testcase>
    </testsuite></testsuites>""")
    assert gpu_check.junit_counts(report) == {"passed": 1, "failed": 1, "errors": 0, "skipped": 2,
                                              "failed_tests": ["test_a::test_bad"], "skip_reasons": ["no CUDA"]}


@pytest.mark.parametrize("argv, message", [
    (["--imdb", "no/such.parquet"], "error: --imdb no/such.parquet not found"),
    (["--only", "imdb_fp32,nope", "--smoke"], "error: --only imdb_fp32,nope: the steps are gpu_tests, "),
    (["--prepare", "--no_download"], "error: --prepare needs --imdb"),
])
def test_mistakes_are_one_line_with_exit_2(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        gpu_check.main([*argv, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith(message) and err.count("\n") == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the full check would run")
def test_the_full_check_is_refused_without_a_gpu(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        gpu_check.main(["--out", str(tmp_path)])
    assert stop.value.code == 2 and "use --smoke" in capsys.readouterr().err


def test_no_data_option_defaults_to_a_path_and_the_device_call_fits_the_tool():
    args = gpu_check.parse([])
    assert (args.imdb, args.poems, args.glove, args.out) == (None, None, None, None)
    command = gpu_check.device_command({"imdb": ".gpu_check/data/train.parquet", "poems": ".gpu_check/data/p.jsonl.gz",
                                        "glove": ".gpu_check/data/g.txt.gz"})
    assert len(command) < 2000 and "--wheels .gpu_check/wheels" in command and "--out $OUT" in command
