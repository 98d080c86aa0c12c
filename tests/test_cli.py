import subprocess
import sys

from tests.conftest import ROOT


def _fmae(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, capture_output=True, text=True)


def test_bad_params_fail_before_any_work_naming_the_key(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text((ROOT / "params.yaml").read_text().replace("mask_ratio: 0.75", "mask_ratio: 1.5"))
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
