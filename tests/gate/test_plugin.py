"""End-to-end tests of the plugin: pytester runs small suites that measure real models.

Every count is derived here from the shapes: a Linear(1024 -> w) on (1, 680, 1024)
costs 680 * 1024 * w MACs (the bias adds no MAC); GFLOPs are 2 * MACs / 1e9.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from pytest_flopbudget.baseline import store as baseline

TOKENS, IN = 680, 1024


def macs_of(width: int) -> int:
    return TOKENS * IN * width


def gflops_of(width: int) -> float:
    return 2 * macs_of(width) / 1e9


MODELS = """
import torch
from torch import nn

WIDTH = {width}

class TwoLayer(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.up = nn.Linear(1024, width)
        self.down = nn.Linear(width, 1024)

    def forward(self, x):
        return self.down(torch.relu(self.up(x)))

def linear(width=WIDTH):
    return nn.Linear(1024, width, device="meta"), torch.empty(1, 680, 1024, device="meta")
"""


def write_models(pytester: pytest.Pytester, width: int = 4096) -> None:
    pytester.makepyfile(models=MODELS.format(width=width))


def write_test(pytester: pytest.Pytester, body: str, name: str = "test_m") -> None:
    pytester.makepyfile(**{name: "import pytest\nimport torch\nimport models\n\n" + textwrap.dedent(body)})


ONE = """
def test_linear(flops):
    model, x = models.linear()
    result = flops(model, x)
    assert result.macs == {macs}
"""


def record(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("--flop-update", *args)


def entries(pytester: pytest.Pytester, name: str = "flopbudget.toml") -> dict[str, int]:
    return {k: e.macs for k, e in baseline.load(pytester.path / name).entries.items()}


# --- measuring and budgets ------------------------------------------------------


def test_measures_exact_macs_and_passes_under_budget(pytester: pytest.Pytester) -> None:
    write_models(pytester)
    write_test(
        pytester,
        f"""
        @pytest.mark.flop_budget(gflops=6.0)
        def test_linear(flops):
            model, x = models.linear()
            result = flops(model, x)
            assert result.macs == {macs_of(4096)}
            assert result.flops == 2 * result.macs
            assert result.params == 1024 * 4096 + 4096
        """,
    )
    result = pytester.runpytest("--flop-report")
    result.assert_outcomes(passed=1, warnings=1)  # the warning: no baseline entry yet, run locally
    result.stdout.fnmatch_lines(["*FLOP REPORT*", "test_m.py::test_linear*5.704*6.000*new*"])


def test_over_budget_fails_with_measured_budget_and_modules(pytester: pytest.Pytester) -> None:
    write_models(pytester)
    write_test(
        pytester,
        """
        @pytest.mark.flop_budget(gflops=5.0)
        def test_mlp(flops):
            with torch.device("meta"):
                model, x = models.TwoLayer(4096), torch.empty(1, 680, 1024)
            flops(model, x)
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    total = 2 * gflops_of(4096)  # up and down cost the same: 11.41 GFLOPs
    over = 100 * (total - 5.0) / 5.0
    result.stdout.fnmatch_lines(
        [
            f"*FLOP budget exceeded: {total:.2f} GFLOPs > 5.00 GFLOPs (+{over:.1f}%)*",
            f"*measured: {2 * macs_of(4096):,} MACs*",
            "*modules carrying the cost*",
            "*down *5.70 GFLOPs*50.0%*",
            "*up *5.70 GFLOPs*50.0%*",
            "*raise gflops in @pytest.mark.flop_budget*",
        ]
    )


def test_closest_marker_wins(pytester: pytest.Pytester) -> None:
    write_models(pytester)
    write_test(
        pytester,
        """
        pytestmark = pytest.mark.flop_budget(gflops=1.0)

        @pytest.mark.flop_budget(gflops=2.0)
        class TestGroup:
            def test_class_budget(self, flops):
                flops(*models.linear())          # 5.70 > 2.0: fails

            @pytest.mark.flop_budget(gflops=6.0)
            def test_own_budget(self, flops):
                flops(*models.linear())          # 5.70 <= 6.0: passes

        def test_module_budget(flops):
            flops(*models.linear())              # 5.70 > 1.0: fails
        """,
    )
    result = pytester.runpytest("--flop-missing=warn")
    result.assert_outcomes(passed=1, failed=2, warnings=1)
    result.stdout.fnmatch_lines(["*> 2.00 GFLOPs*", "*> 1.00 GFLOPs*"])


def test_keyword_arguments_reach_the_model(pytester: pytest.Pytester) -> None:
    write_models(pytester)
    write_test(
        pytester,
        f"""
        class Gate(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.a = torch.nn.Linear(1024, 4096)
                self.b = torch.nn.Linear(1024, 512)

            def forward(self, x, *, wide=True):
                return self.a(x) if wide else self.b(x)

        def test_kwargs(flops):
            with torch.device("meta"):
                model, x = Gate(), torch.empty(1, 680, 1024)
            assert flops(model, x, key="wide").macs == {macs_of(4096)}
            assert flops(model, x=x, wide=False, key="narrow").macs == {macs_of(512)}
        """,
    )
    result = pytester.runpytest("-W", "ignore::pytest_flopbudget.plugin.FlopBudgetWarning")
    result.assert_outcomes(passed=1)


def test_keyed_measurements_get_their_own_entries(pytester: pytest.Pytester) -> None:
    write_models(pytester)
    write_test(
        pytester,
        """
        def test_two(flops):
            flops(*models.linear(4096), key="wide")
            flops(*models.linear(512), key="narrow")

        def test_same_key_twice(flops):
            flops(*models.linear(), key="a")
            flops(*models.linear(), key="a")
        """,
    )
    result = record(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*measured key 'a' twice*give each measurement*own key*"])
    assert entries(pytester) == {
        "test_m.py::test_two#narrow": macs_of(512),
        "test_m.py::test_two#wide": macs_of(4096),
        "test_m.py::test_same_key_twice#a": macs_of(4096),
    }


# --- the marker's arguments and its use ------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        ("gflops=-1", "gflops must be >= 0, got -1.0"),
        ("gflops='5'", "gflops must be a number, got '5' (str)"),
        ("gflops=True", "gflops must be a number, got True (bool)"),
        ("gflops=float('nan')", "gflops must be a finite number, got nan"),
        ("gflops=float('inf')", "gflops must be a finite number, got inf"),
        ("rel='lots'", "rel must be a fraction like 0.02 or a percentage like 2%, got 'lots'"),
        ("abs=-0.5", "abs must be >= 0, got -0.5"),
        ("gflops=1, budget=2", "unknown argument(s) budget to @pytest.mark.flop_budget"),
        ("1, 2", "takes at most one positional argument (gflops), got 2"),
        ("1, gflops=2", "got gflops both as positional and as keyword argument"),
        ("", "needs at least one of gflops=, rel=, abs="),
    ],
)
def test_bad_marker_arguments_are_an_error_of_that_test(pytester: pytest.Pytester, args: str, message: str) -> None:
    write_models(pytester)
    write_test(
        pytester,
        f"""
        @pytest.mark.flop_budget({args})
        def test_bad(flops):
            flops(*models.linear())

        def test_fine():
            pass
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([f"*invalid flop_budget marker on test_m.py::test_bad: *{message}*"])
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    result.stdout.no_fnmatch_line("*Traceback*")


def test_marker_without_measurement_never_passes(pytester: pytest.Pytester) -> None:
    write_models(pytester)
    write_test(
        pytester,
        """
        @pytest.mark.flop_budget(gflops=1)
        def test_no_fixture():
            pass

        @pytest.mark.flop_budget(gflops=1)
        def test_fixture_unused(flops):
            pass
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_no_fixture has a flop_budget marker but does not use the flops fixture*",
            "*test_fixture_unused has a flop_budget marker and requests the flops fixture but measured nothing*",
        ]
    )


def test_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.flop_budget(gflops=None, *, rel=None, abs=None, ms=None, device=None):*"])
    write_models(pytester)
    write_test(pytester, "@pytest.mark.flop_budget(gflops=9)\ndef test_x(flops):\n    flops(*models.linear())\n")
    pytester.runpytest("--strict-markers", "--flop-missing=warn").assert_outcomes(passed=1, warnings=1)


def test_plugin_can_be_disabled(pytester: pytest.Pytester) -> None:
    write_models(pytester)
    write_test(pytester, ONE.format(macs=macs_of(4096)))
    result = pytester.runpytest("-p", "no:flopbudget")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'flops' not found*"])
    assert "flopbudget" not in result.stdout.str().split("collected")[0]


def test_importing_the_plugin_does_not_import_torch() -> None:
    code = "import sys, pytest_flopbudget, pytest_flopbudget.plugin, pytest_flopbudget.gate.plugin; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- baselines: compare, update, prune ------------------------------------------------


def test_update_records_exact_counts_then_compares(pytester: pytest.Pytester) -> None:
    write_models(pytester)
    write_test(pytester, ONE.format(macs=macs_of(4096)))
    result = record(pytester)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*flopbudget: wrote *flopbudget.toml (1 entries; 1 added or changed, 0 removed)*"])
    assert entries(pytester) == {"test_m.py::test_linear": macs_of(4096)}
    text = (pytester.path / "flopbudget.toml").read_text()
    assert f"macs = {macs_of(4096)}" in text and "[meta]" in text and "schema = 1" in text
    # Same count: ok, and nothing is written without --flop-update.
    before = (pytester.path / "flopbudget.toml").stat().st_mtime_ns
    pytester.runpytest("--flop-report").stdout.fnmatch_lines(["*test_m.py::test_linear*5.704*0.0%*ok*"])
    assert (pytester.path / "flopbudget.toml").stat().st_mtime_ns == before


def test_growth_over_the_baseline_fails_with_both_counts(pytester: pytest.Pytester) -> None:
    write_models(pytester, width=4096)
    write_test(pytester, ONE.format(macs=macs_of(4096)))
    record(pytester).assert_outcomes(passed=1)
    write_models(pytester, width=4224)  # +128 hidden units: +3.125%
    write_test(pytester, ONE.format(macs=macs_of(4224)))
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            f"*FLOP regression: {gflops_of(4096):.2f} -> {gflops_of(4224):.2f} GFLOPs (+3.1%, allowed +0%) against flopbudget.toml*",
            f"*baseline: {macs_of(4096):,} MACs*",
            "*changed against the baseline:*",
            f"*<root> *{macs_of(4224) - macs_of(4096):+,} MACs (+3.1%)*",
            '*If intended: pytest "test_m.py::test_linear" --flop-update*',
        ]
    )
    # A tolerance above the growth lets it pass; one below does not.
    pytester.runpytest("--flop-rel=4%").assert_outcomes(passed=1)
    pytester.runpytest("--flop-rel=0.03").assert_outcomes(failed=1)
    pytester.runpytest(f"--flop-abs={gflops_of(4224) - gflops_of(4096) + 0.001}").assert_outcomes(passed=1)
    # --flop-update accepts the growth (the run passes) and records the new count.
    record(pytester).assert_outcomes(passed=1)
    assert entries(pytester) == {"test_m.py::test_linear": macs_of(4224)}


def test_shrinking_is_an_improvement_and_suggests_locking_it_in(pytester: pytest.Pytester) -> None:
    write_models(pytester, width=4096)
    write_test(pytester, ONE.format(macs=macs_of(4096)))
    record(pytester)
    write_models(pytester, width=2048)
    write_test(pytester, ONE.format(macs=macs_of(2048)))
    result = pytester.runpytest("--flop-report")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_m.py::test_linear*2.852*5.704*-50.0%*improved*", "*lock the gain in*--flop-update*"])
    assert entries(pytester) == {"test_m.py::test_linear": macs_of(4096)}  # not written unasked


def test_update_never_blesses_a_budget_violation(pytester: pytest.Pytester) -> None:
    write_models(pytester)
    write_test(
        pytester,
        """
        @pytest.mark.flop_budget(gflops=5.0)
        def test_over(flops):
            flops(*models.linear(4096))

        def test_fine(flops):
            flops(*models.linear(512))
        """,
    )
    result = record(pytester)
    result.assert_outcomes(passed=1, failed=1)
    assert entries(pytester) == {"test_m.py::test_fine": macs_of(512)}


def test_missing_entry_warns_locally_and_fails_in_ci(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    write_models(pytester)
    write_test(pytester, ONE.format(macs=macs_of(4096)))
    local = pytester.runpytest()
    local.assert_outcomes(passed=1, warnings=1)
    local.stdout.fnmatch_lines(["*FlopBudgetWarning: no FLOP baseline in flopbudget.toml*", '*Record it: pytest "test_m.py::test_linear" --flop-update*'])
    for value in ("", "0", "false"):
        monkeypatch.setenv("CI", value)
        pytester.runpytest().assert_outcomes(passed=1, warnings=1)
    monkeypatch.setenv("CI", "true")
    in_ci = pytester.runpytest()
    in_ci.assert_outcomes(failed=1)
    in_ci.stdout.fnmatch_lines(["*missing=fail ?auto, CI?*", "*no FLOP baseline in flopbudget.toml*", '*Record it: pytest "test_m.py::test_linear" --flop-update*'])
    pytester.runpytest("--flop-missing=warn").assert_outcomes(passed=1, warnings=1)
    monkeypatch.delenv("CI")
    pytester.runpytest("--flop-missing=fail").assert_outcomes(failed=1)
    assert not (pytester.path / "flopbudget.toml").exists()


def test_prune_removes_gone_tests_only_on_a_full_run(pytester: pytest.Pytester) -> None:
    write_models(pytester)
    write_test(
        pytester,
        """
        def test_keep(flops):
            flops(*models.linear(512))

        def test_gone(flops):
            flops(*models.linear(1024))
        """,
    )
    write_test(pytester, "def test_other(flops):\n    flops(*models.linear(256))\n", name="test_other")
    record(pytester).assert_outcomes(passed=3)
    assert len(entries(pytester)) == 3
    write_test(pytester, "def test_keep(flops):\n    flops(*models.linear(512))\n")
    (pytester.path / "test_other.py").unlink()
    # Filtered runs refuse to prune, before any test runs.
    for args in (["-k", "keep"], ["test_m.py::test_keep"], ["--deselect", "test_m.py::test_keep"]):
        result = pytester.runpytest("--flop-prune", *args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(["*--flop-prune needs a run of every test*"])
    assert len(entries(pytester)) == 3
    # A plain update keeps entries of tests that did not run.
    record(pytester).assert_outcomes(passed=1)
    assert len(entries(pytester)) == 3
    result = pytester.runpytest("--flop-prune")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*removed test_m.py::test_gone*", "*removed test_other.py::test_other*"])
    assert entries(pytester) == {"test_m.py::test_keep": macs_of(512)}


def test_prune_is_skipped_when_collection_fails(pytester: pytest.Pytester) -> None:
    write_models(pytester)
    write_test(pytester, "def test_keep(flops):\n    flops(*models.linear(512))\n")
    write_test(pytester, "def test_b(flops):\n    flops(*models.linear(8))\n", name="test_b")
    record(pytester)
    write_test(pytester, "import nonexistent_module\n", name="test_b")
    result = pytester.runpytest("--flop-prune", "--continue-on-collection-errors")
    result.stdout.fnmatch_lines(["*--flop-prune skipped: 1 collection error(s)*"])
    assert set(entries(pytester)) == {"test_m.py::test_keep", "test_b.py::test_b"}


def test_malformed_baseline_is_a_usage_error_and_never_overwritten(pytester: pytest.Pytester) -> None:
    write_models(pytester)
    write_test(pytester, ONE.format(macs=macs_of(4096)))
    broken = '[meta]\nschema = 1\n\n["test_m.py::test_linear"]\nmacs = "lots"\n'
    (pytester.path / "flopbudget.toml").write_text(broken)
    result = pytester.runpytest("--flop-update")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*flopbudget.toml*"])
    assert (pytester.path / "flopbudget.toml").read_text() == broken
    (pytester.path / "flopbudget.toml").write_text("[meta\nschema = 1\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*flopbudget.toml:1:6: not valid TOML*"])


# --- options, ini twins, header, reports --------------------------------------------------


def test_ini_options_and_cli_precedence(pytester: pytest.Pytester) -> None:
    write_models(pytester, width=4096)
    write_test(pytester, ONE.format(macs=macs_of(4096)))
    pytester.makefile(".toml", custom="")
    pytester.makepyprojecttoml(
        """
        [tool.pytest.ini_options]
        flopbudget_baseline = "budgets/flops.toml"
        flopbudget_rel = "5%"
        flopbudget_missing = "fail"
        flopbudget_report = "true"
        """
    )
    (pytester.path / "budgets").mkdir()
    result = record(pytester)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*flopbudget: baseline */budgets/flops.toml (*rel=0.05*missing=fail*", "*FLOP REPORT*"])
    assert entries(pytester, "budgets/flops.toml") == {"test_m.py::test_linear": macs_of(4096)}
    write_models(pytester, width=4224)  # +3.1%: inside the ini's 5%
    write_test(pytester, ONE.format(macs=macs_of(4224)))
    pytester.runpytest().assert_outcomes(passed=1)
    pytester.runpytest("--flop-rel=1%").assert_outcomes(failed=1)  # the command line wins over the ini
    # ... and the marker wins over both.
    write_test(pytester, "@pytest.mark.flop_budget(rel=0.01)\n" + textwrap.dedent(ONE.format(macs=macs_of(4224))).lstrip())
    pytester.runpytest().assert_outcomes(failed=1)
    pytester.runpytest("--flop-rel=10%").assert_outcomes(failed=1)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--flop-rel=abc"], "option --flop-rel must be a fraction like 0.02 or a percentage like 2%, got 'abc'"),
        (["--flop-rel=-1%"], "must be a fraction like 0.02 or a percentage like 2%, got '-1%'"),
        (["--flop-abs=1e999"], "option --flop-abs must be a finite number"),
        (["--flop-top=many"], "option --flop-top must be a whole number, got 'many'"),
        (["--flop-baseline=."], "is a directory; --flop-baseline/flopbudget_baseline take a file path"),
        (["--flop-report-json=nowhere/r.json"], "--flop-report-json*directory*nowhere does not exist; create it first"),
    ],
)
def test_bad_option_values_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*pytest-flopbudget: *{message}*"])


def test_bad_ini_value_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nflopbudget_missing = sometimes\n")
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini flopbudget_missing must be one of fail, warn, auto, got 'sometimes'*"])


def test_json_report(pytester: pytest.Pytester) -> None:
    write_models(pytester)
    write_test(
        pytester,
        """
        @pytest.mark.flop_budget(gflops=6)
        def test_linear(flops):
            flops(*models.linear())
        """,
    )
    record(pytester)
    result = pytester.runpytest("--flop-report-json=report.json")
    result.assert_outcomes(passed=1)
    data = json.loads((pytester.path / "report.json").read_text())
    assert data["schema"] == 1
    assert {"torch", "torchprofile", "python"} <= set(data["env"])
    (test,) = data["tests"]
    assert test["id"] == "test_m.py::test_linear"
    assert test["macs"] == macs_of(4096)
    assert test["gflops"] == pytest.approx(gflops_of(4096))
    assert test["params"] == 1024 * 4096 + 4096
    assert test["budget_gflops"] == 6
    assert test["baseline_gflops"] == pytest.approx(gflops_of(4096))
    assert test["delta_pct"] == 0.0
    assert test["status"] == "ok"


def test_own_hooks_replace_the_counter_and_amend_the_json(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        from pytest_flopbudget import FlopResult

        def pytest_flopbudget_count(model, args, kwargs, config):
            return FlopResult(macs=len(args) * 1000, counter="mine")

        def pytest_flopbudget_json_report(config, report):
            report["team"] = "vision"
        """
    )
    pytester.makepyfile(test_h="def test_h(flops):\n    assert flops(object(), 1, 2, 3).macs == 3000\n")
    pytester.runpytest("--flop-report-json=r.json").assert_outcomes(passed=1, warnings=1)
    data = json.loads((pytester.path / "r.json").read_text())
    assert data["team"] == "vision" and data["tests"][0]["macs"] == 3000


def test_model_errors_fail_the_test_cleanly(pytester: pytest.Pytester) -> None:
    write_models(pytester)
    write_test(
        pytester,
        """
        def test_wrong_input(flops):
            model, _ = models.linear()
            flops(model, torch.empty(1, 680, 7, device="meta"))

        def test_not_a_model(flops):
            flops("resnet", torch.empty(1))
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*flops: could not count Linear: RuntimeError*", "*flops: could not count str: TypeError*"])
    result.stdout.no_fnmatch_line("*INTERNALERROR*")


def test_accept_command_names_a_baseline_given_on_the_command_line(pytester: pytest.Pytester) -> None:
    write_models(pytester, width=4096)
    write_test(pytester, ONE.format(macs=macs_of(4096)))
    record(pytester, "--flop-baseline=budgets.toml")
    write_models(pytester, width=4224)
    write_test(pytester, ONE.format(macs=macs_of(4224)))
    result = pytester.runpytest("--flop-baseline=budgets.toml", "--flop-report", "--flop-report-md=r.md")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            '*If intended: pytest "test_m.py::test_linear" --flop-update --flop-baseline=budgets.toml*',
            "Regressed (1): if the growth is intended, accept it with pytest --flop-update --flop-baseline=budgets.toml*",
        ]
    )
    assert "pytest --flop-update --flop-baseline=budgets.toml" in (pytester.path / "r.md").read_text()
    # Set in the ini file, the baseline needs no flag in the command.
    pytester.makeini("[pytest]\nflopbudget_baseline = budgets.toml\n")
    pytester.runpytest().stdout.fnmatch_lines(['*If intended: pytest "test_m.py::test_linear" --flop-update  (then commit budgets.toml)*'])


def test_header_warns_when_the_baseline_was_recorded_with_another_counter(pytester: pytest.Pytester) -> None:
    write_models(pytester)
    write_test(pytester, ONE.format(macs=macs_of(4096)))
    record(pytester, "--flop-counter=flop_counter")
    assert 'counter = "flop_counter"' in (pytester.path / "flopbudget.toml").read_text()
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(["flopbudget: WARNING baseline recorded with counter flop_counter, this run uses torchprofile: counts may differ"])
    pytester.runpytest("--flop-counter=flop_counter").stdout.no_fnmatch_line("*WARNING baseline recorded*")


def test_unpriced_operators_are_reported_even_when_the_test_passes(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        from pytest_flopbudget.engine import rules

        def pytest_configure(config):
            rules.unregister_rule("aten::gelu")      # pretend the counter has no formula for it

        def pytest_unconfigure(config):
            rules.zero_cost("aten::gelu")
        """
    )
    write_models(pytester)
    write_test(
        pytester,
        f"""
        def test_gelu(flops):
            model, x = models.linear()
            result = flops(torch.nn.Sequential(model, torch.nn.GELU()), x)
            assert result.unpriced == {{"aten::gelu": 1}}
            assert result.macs == {macs_of(4096)}
        """,
    )
    result = pytester.runpytest("--flop-missing=warn", "--flop-report-json=r.json")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["flopbudget: counted as 0 (no counting rule): aten::gelu x1; in 1 measurement(s): test_m.py::test_gelu"])
    assert json.loads((pytester.path / "r.json").read_text())["tests"][0]["unpriced"] == {"aten::gelu": 1}
