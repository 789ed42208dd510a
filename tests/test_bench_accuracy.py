"""`python -m bench.accuracy` (in `make bench-quick`, and the gate of `make test-model`) runs on real models here,
so it cannot rot. The figures are the benchmark's business; this checks the table and the gate."""

from __future__ import annotations

import json

from bench import accuracy


def test_the_report_has_every_cell_and_the_demo_pair_passes_the_gate(trained_models, tmp_path, capsys) -> None:
    out = tmp_path / "accuracy.json"
    argv = ["--per-cell", "1", "--require-goal", "--model", str(trained_models.text),
            "--mmproj", str(trained_models.mmproj), "--out", str(out)]  # fmt: skip
    code = accuracy.main(argv)
    report = json.loads(out.read_text())
    cells = report["cells"]
    assert len(cells) == 16
    assert "shape / follow-up / non-square" in cells
    printed = capsys.readouterr().out
    assert all(f"| {name} |" in printed for name in cells)
    # one scene per cell: a pair meeting 95 % gets these right, and the gate lets it through
    assert [name for name, cell in cells.items() if cell["right"] != 1] == []
    assert code == 0


def test_the_gate_refuses_a_pair_that_misses_the_goal(tiny_models, capsys) -> None:
    # random weights answer gibberish: every cell misses, and --require-goal makes that the exit status
    argv = ["--per-cell", "1", "--require-goal", "--model", str(tiny_models.text), "--mmproj", str(tiny_models.mmproj)]
    assert accuracy.main(argv) == 1
    assert "below the 95% goal: colour / first turn / square" in capsys.readouterr().err
    assert accuracy.main(argv[:2] + argv[3:]) == 0  # without the gate it only reports
