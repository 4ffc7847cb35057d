"""The ``flopbudget`` command: count, compare, compare-baselines, and its errors.

Counts by hand from the shapes: ``nn.Linear(1000, 1000)`` on (10, 1000) is 10 * 1000 * 1000 MACs
(the bias adds none); ``Tokens`` looks up (2, 5) ids in an Embedding (no MAC) and projects 16 -> 8:
2 * 5 * 16 * 8 MACs. The GPT-2 config (1 layer, width 8, 2 heads, vocabulary 16) on 4 tokens:
c_attn 4*8*24, scores and values 2 * 4*4*8, c_proj 4*8*8, MLP 4*8*32 + 4*32*8, LM head 4*8*16.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_flopbudget import cli
from pytest_flopbudget.baseline import store

ROOT = Path(__file__).resolve().parents[1]

MODELS = """
import torch
from torch import nn

def linear():
    return nn.Linear(1000, 1000)

def wide():
    return nn.Linear(1000, 1250)

class Tokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(100, 16)
        self.head = nn.Linear(16, 8)

    def forward(self, ids):
        return self.head(self.embed(ids))

class Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.Linear(64, 128)
        self.down = nn.Linear(128, 32)

    def forward(self, x):
        return self.down(self.up(x))

def not_a_model():
    return 3

def broken():
    raise RuntimeError("no such checkpoint")
"""

LINEAR = 10 * 1000 * 1000
TOKENS = 2 * 5 * 16 * 8
UP, DOWN = 4 * 64 * 128, 4 * 128 * 32


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "cli_models.py").write_text(textwrap.dedent(MODELS))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("cli_models", None)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_count_prints_macs_flops_published_params_and_where(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "count", "cli_models:linear", "--input", "10x1000")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert f"MACs:      {LINEAR:,}" in lines
    assert f"FLOPs:     {2 * LINEAR:,} = 0.0200 GFLOPs (2 x MACs)" in lines
    assert lines[lines.index(f"MACs:      {LINEAR:,}") + 2].startswith("published: 0.0100 GMACs")
    assert f"params:    {1000 * 1000 + 1000:,} (1.00 M)" in lines
    assert any(line.split()[:3] == ["matmul", f"{LINEAR:,}", "MACs"] for line in lines)


def test_count_with_named_modules_and_json(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "count", "cli_models:Two", "--input", "4x64", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["macs"] == UP + DOWN and data["flops"] == 2 * (UP + DOWN)
    assert data["published_macs"] == UP + DOWN and data["published_gmacs"] == (UP + DOWN) / 1e9
    assert data["params"] == 64 * 128 + 128 + 128 * 32 + 32
    assert data["top_modules"] == [{"module": "up", "macs": UP}, {"module": "down", "macs": DOWN}]
    assert data["inputs"] == ["float32:4x64"]


def test_count_integer_inputs(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "count", "cli_models:Tokens", "--input", "int64:2x5", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["macs"] == TOKENS and data["categories"]["matmul"] == TOKENS
    assert data["inputs"] == ["int64:2x5"]


def test_compare_two_models_side_by_side(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "compare", "cli_models:linear", "cli_models:wide", "--input", "10x1000")
    assert code == 0
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[4:] if line.strip()}
    assert rows["MACs"] == [f"{LINEAR:,}", f"{10 * 1000 * 1250:,}", "+25.0%"]
    assert rows["GFLOPs"] == ["0.0200", "0.0250", "+25.0%"]
    assert out.splitlines()[0] == "A: cli_models:linear"


def write_baseline(path: Path, entries: dict[str, store.Entry]) -> None:
    path.write_text(store.render(entries, {"schema": store.SCHEMA}))


def test_compare_baselines_lists_changes_and_exits_past_the_threshold(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = tmp_path / "old.toml", tmp_path / "new.toml"
    write_baseline(old, {
        "t.py::grows": store.Entry(1000, {"enc": 600, "head": 400}),
        "t.py::same": store.Entry(50),
        "t.py::shrinks": store.Entry(1000),
        "t.py::gone": store.Entry(10),
    })
    write_baseline(new, {
        "t.py::grows": store.Entry(1250, {"enc": 600, "head": 650}),
        "t.py::same": store.Entry(50),
        "t.py::shrinks": store.Entry(900),
        "t.py::fresh": store.Entry(10),
    })
    code, out, _ = run(capsys, "compare-baselines", str(old), str(new))
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("raised +25.0%: t.py::grows  ") and lines[0].endswith("(+250 MACs)  FAIL")
    assert lines[1].split() == ["head", "+250", "MACs"]
    assert lines[2].startswith("lowered -10.0%: t.py::shrinks") and "FAIL" not in lines[2]
    assert "new: t.py::fresh" in lines and "gone: t.py::gone" in lines
    assert lines[-1] == "1 raised, 1 lowered, 1 unchanged, 1 new, 1 gone (rel 0%): a test grew past the limit"
    code, out, _ = run(capsys, "compare-baselines", str(old), str(new), "--rel", "25%")
    assert code == 0 and "FAIL" not in out and out.splitlines()[-1].endswith("(rel 25%): within the limit")
    assert run(capsys, "compare-baselines", str(old), str(new), "--rel", "0.2")[0] == 1


def test_compare_baselines_of_different_module_depths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = tmp_path / "old.toml", tmp_path / "new.toml"
    write_baseline(old, {"t.py::m": store.Entry(100, {"h.*.mlp": 100})})  # recorded at 3 parts
    write_baseline(new, {"t.py::m": store.Entry(120, {"h.*.mlp.c_fc": 60, "h.*.mlp.c_proj": 60})})
    code, out, _ = run(capsys, "compare-baselines", str(old), str(new), "--rel", "50%")
    assert code == 0
    assert out.splitlines()[1].split() == ["h.*.mlp", "+20", "MACs"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["count", "cli_models:linear", "--input", "10by1000"], "a shape is sizes joined by x"),
        (["count", "cli_models:linear", "--input", "complex:2x2"], "unknown dtype 'complex'"),
        (["count", "cli_models:linear", "--input", "0x4"], "every size must be at least 1"),
        (["count", "cli_models", "--input", "1x4"], "name a factory as package.module:function"),
        (["count", "no_such_module:f", "--input", "1x4"], "cannot import no_such_module"),
        (["count", "cli_models:nothing", "--input", "1x4"], "cli_models has no 'nothing'"),
        (["count", "cli_models:not_a_model", "--input", "1x4"], "returned int, not a model"),
        (["count", "cli_models:broken", "--input", "1x4"], "the factory failed: RuntimeError: no such checkpoint"),
        (["count", "cli_models:linear"], "give its inputs: --input"),
        (["count", "cli_models:linear", "--input", "3x7"], "could not count it on float32:3x7"),
        (["count", "hf:missing/config.json", "--tokens", "8"], "no such file or directory missing/config.json"),
        (["compare-baselines", "old.toml", "new.toml"], "old.toml: no such baseline file"),
    ],
)
def test_bad_input_exits_2_with_one_line(models: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("flopbudget: error: ") and message in err, err


def test_a_malformed_baseline_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[x\n")
    write_baseline(tmp_path / "good.toml", {})
    code, _, err = run(capsys, "compare-baselines", str(bad), str(tmp_path / "good.toml"))
    assert code == 2 and err.count("\n") == 1 and "bad.toml" in err


def test_usage_errors_exit_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["frobnicate"], ["compare-baselines", "a.toml"], ["compare-baselines", "a", "b", "--rel", "lots"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("flopbudget: error: ") and "--help" in err


def test_the_command_runs_as_a_process_with_help(models: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    helped = subprocess.run([sys.executable, "-m", "pytest_flopbudget.cli", "--help"], capture_output=True, text=True, env=env, check=False)
    assert helped.returncode == 0
    assert all(name in helped.stdout for name in ("count", "compare", "compare-baselines"))
    done = subprocess.run(
        [sys.executable, "-m", "pytest_flopbudget.cli", "count", "cli_models:Tokens", "--input", "int64:2x5"],
        capture_output=True, text=True, env=env, cwd=models, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"MACs:      {TOKENS:,}" in done.stdout.splitlines()
    bad = subprocess.run([sys.executable, "-m", "pytest_flopbudget.cli", "count", "x:y", "--input", "1x"],
                         capture_output=True, text=True, env=env, cwd=models, check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_entry_point_is_declared() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert '[project.scripts]\nflopbudget = "pytest_flopbudget.cli:main"' in text


GPT2 = {"model_type": "gpt2", "n_layer": 1, "n_embd": 8, "n_head": 2, "vocab_size": 16, "n_positions": 8,
        "bos_token_id": 0, "eos_token_id": 0}


def test_hf_config_on_meta(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("transformers")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(GPT2))
    code, out, err = run(capsys, "count", f"hf:{config}", "--tokens", "4", "--json")
    assert code == 0, err
    data = json.loads(out)
    t, w = 4, 8
    assert data["published_macs"] == t * w * 3 * w + 2 * t * t * w + t * w * w + t * w * 4 * w + t * 4 * w * w + t * w * 16
    assert data["categories"]["attention"] == 2 * t * t * w
    assert data["inputs"] == ["int64:1x4"] and data["mode"] == "meta"
    top = {m["module"]: m["macs"] for m in data["top_modules"]}
    assert top["transformer.h.*.mlp.c_fc"] == t * w * 4 * w and top["transformer.h.*.mlp.c_proj"] == t * 4 * w * w
    assert run(capsys, "count", f"hf:{config}")[0] == 2  # no --tokens, no --input


def test_timm_model_on_meta(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("timm")
    code, out, err = run(capsys, "count", "timm:resnet18", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["inputs"] == ["float32:1x3x224x224"]  # timm's default input size
    # conv1: 7x7x3 -> 64 over 112x112 outputs
    assert data["categories"]["conv"] >= 112 * 112 * 64 * 7 * 7 * 3
    assert data["mode"] == "meta"
