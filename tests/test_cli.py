import subprocess
import sys

from tests.conftest import PARAMS, ROOT


def _fmae(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, capture_output=True, text=True)


def test_bad_params_fail_before_any_work_naming_the_key(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text((PARAMS).read_text().replace("mask_ratio: 0.75", "mask_ratio: 1.5"))
    done = _fmae("synthesize", "--params", str(bad), cwd=tmp_path)
    assert done.returncode == 2
    assert "pretrain.mask_ratio = 1.5: expected a number in the open interval (0, 1)" in done.stderr
    assert not (tmp_path / "data").exists()


def test_set_override_is_validated(tmp_path):
    done = _fmae("synthesize", "--set", "iat.lambda=-1", cwd=ROOT)
    assert done.returncode == 2 and "iat.lambda = -1" in done.stderr


def test_console_script_lists_stages():
    done = subprocess.run([str(__import__("pathlib").Path(sys.executable).parent / "fmae"), "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "synthesize" in done.stdout


def _one_line_error(done) -> str:
    lines = [line for line in done.stderr.splitlines() if not line.startswith("INFO ")]
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_bad_command_lines_give_one_line_and_leave_nothing_behind(tmp_path):
    (tmp_path / "params.yaml").write_text((PARAMS).read_text())
    cases = {
        ("prepare", "--dataset", "nope"): "invalid choice: 'nope' (choose from 'bp4d', 'bp4dplus', 'disfa')",
        ("finetune", "--dataset", "nope", "--fold", "1"): "invalid choice: 'nope'",
        ("finetune", "--dataset", "bp4d", "--fold", "7"): "--fold = 7: expected a fold of bp4d: 1-3",
        ("finetune", "--dataset", "bp4d", "--fold", "1", "--variant", "x"): "invalid choice: 'x' (choose from 'iat', 'fmae', 'random')",
        ("finetune", "--dataset", "bp4d", "--fold", "1"): "data/au/bp4d/index.parquet missing: prepare the dataset first",
        ("pretrain", "--set", "pretrain.init=nope.pth"): "pretrain.init = 'nope.pth': expected '' (random init) or the path",
        ("evaluate",): "missing: run `dvc repro finetune_fmae@bp4d-1` first",
        ("synthesize", "--set", "iat.lamda=1"): "iat.lamda = 1: expected an existing key of params.yaml; did you mean iat.lambda or iat.folds?",
        ("prepare_fer", "--dataset", "rafdb"): "fer.rafdb.root = 'data/raw/fer/RAF-DB/basic': expected an existing folder",
        ("finetune_fer", "--dataset", "affectnet"): "data/fer/affectnet/index.parquet missing: prepare the dataset first",
        ("finetune_fer",): "the following arguments are required: --dataset",
        ("evaluate_fer",): "models/fer/rafdb/metrics.json missing: run `dvc repro finetune_fer@rafdb` first",
        ("synthesize", "--set", "fer.datasets=[]"): "fer.datasets = []: expected at least one of rafdb, affectnet, custom",
        ("synthesize", "--set", "fer.datasets=[custom]"): "fer.custom.root = '': expected a path",
    }
    for argv, expected in cases.items():
        line = _one_line_error(_fmae(*argv, cwd=tmp_path))
        assert expected in line, (argv, line)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # no dvclive/, data/ or models/ left


def test_a_missing_init_checkpoint_is_named(tmp_path):
    (tmp_path / "params.yaml").write_text((PARAMS).read_text())
    (tmp_path / "data" / "au" / "bp4d").mkdir(parents=True)
    (tmp_path / "data" / "au" / "bp4d" / "index.parquet").write_bytes(b"")
    line = _one_line_error(_fmae("finetune", "--dataset", "bp4d", "--fold", "1", "--set", "finetune.init=nope.pth", cwd=tmp_path))
    assert "finetune.init = 'nope.pth': expected an existing checkpoint file" in line
    line = _one_line_error(_fmae("finetune", "--dataset", "bp4d", "--fold", "1", cwd=tmp_path))
    assert "models/fmae/fmae.pth missing (finetune.init)" in line
    assert not (tmp_path / "dvclive").exists()


def test_bad_params_files_give_file_line_and_column(tmp_path):
    (tmp_path / "bad.yaml").write_text("synth:\n  seed: 0\n   out_dir: x\n")
    assert _one_line_error(_fmae("synthesize", "--params", "bad.yaml", cwd=tmp_path)).startswith(
        "fmae synthesize: bad.yaml:3:11: not valid YAML (mapping values are not allowed here)")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    assert "list.yaml: expected a mapping of sections" in _one_line_error(_fmae("synthesize", "--params", "list.yaml", cwd=tmp_path))


def test_each_stage_has_its_own_help():
    finetune, synth = _fmae("finetune", "--help"), _fmae("synthesize", "--help")
    text = " ".join(finetune.stdout.split())  # argparse wraps lines
    assert finetune.returncode == 0 and "--fold" in text and "Reads params.yaml: model, finetune, au.unknown_policy" in text
    assert "--fold" not in synth.stdout and "Reads params.yaml: synth" in " ".join(synth.stdout.split())


def test_building_the_command_line_imports_no_torch():
    """`fmae --help` and every stage's parsing stay fast: torch is imported by the stage that needs it, not the parser."""
    import subprocess
    import sys

    code = "import sys; from pipeline.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
