"""`fmae results`: the paper-style table built from DVC's experiment rows."""

from __future__ import annotations

from pipeline.results import PROBES, table, value


def test_table_reads_bare_and_file_prefixed_keys_and_marks_missing_values():
    rows = [
        {"Experiment": None, "rev": "workspace", "typ": "baseline", "iat.lambda": 2.0, "iat.schedule": "constant",
         "iat.id_head_layers": 1.0, "iat.id_loss": "bce", "finetune.augment": "flip", "finetune.seed": 0.0,
         "finetune.selection": "validation", "bp4d.fmae.f1_mean": 0.6612, "bp4d.iat.f1_mean": 0.6714,
         "bp4d.random.f1_mean": 0.5, "bp4d.iat_minus_fmae_f1": 0.0102,
         "metrics/au.json:bp4d.fmae.f1_constant_mean": 0.41, "bp4d.identity.release.iat": 0.279,
         "bp4d.identity.release.chance": 0.0244, "metrics/au.json:bp4d.iat.fold1.epoch": 7.0},
        {"Experiment": "lean-ibex", "rev": "abc1234", "typ": "branch_commit", "iat.lambda": 0.0,
         "bp4d.iat_minus_fmae_f1": -0.0001},
    ]
    assert value(rows[0], "bp4d.fmae.f1_constant_mean") == 0.41 and value(rows[1], "bp4d.iat.f1_mean") is None
    lines = table(rows, "bp4d").splitlines()
    assert lines[0].startswith("| experiment | lambda | schedule | head | id loss | augment | seed | selection | F1 FMAE | F1 IAT | F1 random | IAT-FMAE | floor |")
    work = [c.strip() for c in lines[2].split("|")[1:-1]]
    assert work[:13] == ["workspace", "2", "constant", "1", "bce", "flip", "0", "validation", "66.1", "67.1", "50.0", "1.0", "41.0"]
    assert work[-1] == "7"  # the selected epoch is a count, not a percentage
    other = [c.strip() for c in lines[3].split("|")[1:-1]]
    assert other[:2] == ["lean-ibex", "0"] and other[8] == "-" and other[11] == "0.0"  # missing; no "-0.0"
    probes = table(rows, "bp4d", PROBES).splitlines()
    assert "a iat" in probes[0] and "c chance" in probes[0]
    cells = dict(zip([c.strip() for c in probes[0].split("|")[1:-1]], [c.strip() for c in probes[2].split("|")[1:-1]]))
    assert (cells["a iat"], cells["a chance"], cells["b fmae"]) == ("27.9", "2.4", "-")
