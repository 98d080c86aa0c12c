import dataclasses
import re

import pytest
import yaml

from pipeline import overlay
from pipeline.config import ConfigError, Recipe, load_params, params_from_dict, require_dir
from tests.conftest import ROOT


def _raw():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.fixture(scope="module")
def shipped():
    """The shipped params.yaml (the other tests build on tests/params.yaml)."""
    return load_params(ROOT / "params.yaml")


def test_defaults_load_into_frozen_dataclasses(shipped):
    params = shipped
    assert params.iat.lambda_ == 2.0
    assert params.pretrain.mask_ratio == 0.75
    with pytest.raises(AttributeError):
        params.iat.lambda_ = 1.0  # frozen


def test_round_trip_to_plain_data_matches_params_yaml(shipped):
    assert shipped.to_dict() == _raw()


@pytest.mark.parametrize("key, value, fragment", [
    ("iat.lambda", -0.5, ">= 0"),
    ("pretrain.mask_ratio", 1.0, "(0, 1)"),
    ("pretrain.mask_ratio", 0.0, "(0, 1)"),
    ("model.name", "vit_huge_patch14_224", "vit_base_patch16_224"),
    ("synth.seed", "zero", "an integer"),
    ("synth.workers", True, "an integer"),
    ("iat.id_loss", "focal", "'bce'"),
    ("finetune.datasets", ["bp4d", "affwild"], "one of bp4d"),
    ("sources.celeba.max_images", -1, ">= 0"),
    ("synth.sources.celeba.identities", 10_000, "[1, images="),
    ("pretrain.decoder_heads", 7, "divisor"),
    ("finetune.rand_augment", "m9", "timm RandAugment spec"),
    ("finetune.min_crop_scale", 0.0, "(0, 1]"),
    ("finetune.erase_prob", 1.5, "[0, 1]"),
    ("finetune.warmup_epochs", 13, "[0, epochs="),  # the recipe's checks, written once, for AUs and FER alike
    ("fer.rafdb.warmup_epochs", 16, "[0, epochs=15]"),
    ("fer.affectnet.blr", 0.0, "> 0"),
    ("fer.erase_prob", -0.1, "[0, 1]"),
    ("fer.val_fraction", 1.0, "open interval (0, 1)"),
])
def test_bad_values_name_key_value_and_allowed(key, value, fragment):
    with pytest.raises(ConfigError) as err:
        load_params(ROOT / "params.yaml", {key: value})
    message = str(err.value)
    shown_key = key if key != "finetune.datasets" else "finetune.datasets.1"
    assert message.startswith(f"{ROOT / 'params.yaml'}: {shown_key} = ")
    assert fragment in message


def test_unknown_key_is_rejected_with_the_known_ones():
    data = _raw()
    data["iat"]["lamda"] = 1.0
    with pytest.raises(ConfigError, match=r"iat\.lamda = 1\.0: expected no such key; known keys here: lambda, schedule, folds, id_head_layers"):
        params_from_dict(data)


def test_missing_key_and_missing_section():
    data = _raw()
    del data["curate"]["seed"]
    with pytest.raises(ConfigError, match=r"curate\.seed = '<missing>'"):
        params_from_dict(data)
    data = _raw()
    del data["ray"]
    with pytest.raises(ConfigError, match=r"^params\.yaml: ray = '<missing>'"):
        params_from_dict(data)


def test_override_of_unknown_key_is_an_error():
    with pytest.raises(ConfigError, match="an existing key"):
        load_params(ROOT / "params.yaml", {"iat.nope": 1})


def test_missing_params_file(tmp_path):
    with pytest.raises(ConfigError, match="an existing params.yaml"):
        load_params(tmp_path / "params.yaml")


def test_missing_dataset_root_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"au\.bp4d\.root = '.*nowhere': expected an existing directory"):
        require_dir(tmp_path / "nowhere", "au.bp4d.root")


def test_every_key_in_params_yaml_has_a_comment():
    text = (ROOT / "params.yaml").read_text().splitlines()
    key_line = re.compile(r"^\s*[A-Za-z_][\w]*:")
    undocumented = [line for line in text if key_line.match(line) and "#" not in line]
    assert not undocumented, undocumented


def overlaid(name: str):
    """params.yaml with the overlay ``name`` applied (each key checked to exist)."""
    return load_params(ROOT / "params.yaml", overlay.read(ROOT / name, ROOT / "params.yaml"))


def test_params_paper_overlay_yields_the_papers_settings():
    paper = overlaid("params-paper.yaml")
    assert (paper.model.name, paper.model.img_size) == ("vit_large_patch16_224", 224)
    assert (paper.pretrain.decoder_dim, paper.pretrain.decoder_depth, paper.pretrain.decoder_heads) == (512, 8, 16)
    assert (paper.pretrain.epochs, paper.pretrain.blr, paper.pretrain.mask_ratio, paper.pretrain.batch_size) == (50, 1.5e-4, 0.75, 128)
    assert (paper.finetune.epochs, paper.finetune.batch_size, paper.finetune.blr, paper.finetune.layer_decay) == (30, 64, 5e-4, 0.65)
    assert (paper.finetune.augment, paper.finetune.min_crop_scale, paper.finetune.rand_augment, paper.finetune.erase_prob) == \
        ("paper", 0.08, "rand-m9-mstd0.5-inc1", 0.25)
    assert paper.finetune.folds == paper.iat.folds == paper.finetune.random_folds == (1, 2, 3)
    assert paper.iat.lambda_ == 2.0 and paper.iat.schedule == "constant"
    assert paper.au.frame_step == 1 and paper.au.box_margin == 0.05 and paper.au.crop_size == paper.curate.image_size == 224
    r = paper.evaluate.release_probe  # the released probe (its finetuning script's defaults)
    assert (paper.evaluate.probe_train_frames, paper.evaluate.probe_test_frames, r.epochs, r.blr, r.batch_size) == (70, 30, 20, 5e-4, 32)
    assert r.models == ("fmae", "iat")  # the paper probes the finetuned FMAE and FMAE-IAT encoders
    f = paper.fer  # the released FER recipes
    assert (f.rafdb.blr, f.rafdb.epochs, f.affectnet.blr, f.affectnet.epochs, f.layer_decay) == (1e-3, 60, 5e-4, 30, 0.65)


def test_params_fast_overlay_yields_the_fast_configuration():
    """The README's fast configuration: a small world, a short MAE, 4 epochs of the paper's recipe, every
    variant on few folds; the learning one (params.yaml) pretrains ~30x longer on ~9x the faces."""
    fast, learn = overlaid("params-fast.yaml"), load_params(ROOT / "params.yaml")
    assert fast.synth.sources.umdfaces.images == 100 and learn.synth.sources.umdfaces.images == 8000
    assert (fast.synth.au.bp4d.tasks, fast.au.frame_step, learn.synth.au.bp4d.tasks, learn.au.frame_step) == (2, 8, 8, 4)
    assert (fast.pretrain.epochs, fast.pretrain.batch_size, learn.pretrain.epochs, learn.pretrain.batch_size) == (16, 32, 28, 64)
    assert (fast.pretrain.fsfm.distill, learn.pretrain.fsfm.distill) == (False, True)  # fast: FSFM's region masking alone
    assert (fast.finetune.epochs, fast.finetune.augment, learn.finetune.epochs, learn.finetune.augment) == (4, "paper", 8, "flip")
    assert fast.iat.folds == (1, 2, 3) and learn.iat.folds == learn.finetune.random_folds == fast.finetune.random_folds == (1,)
    assert learn.finetune.folds == (1, 2, 3) and learn.model == fast.model  # the same ViT-Ti at 112 px
    assert learn.finetune.blr * learn.finetune.batch_size / 256 == pytest.approx(1e-3)  # lr 1e-3


@pytest.mark.parametrize("name", ["params-fast.yaml", "params-paper.yaml"])
def test_an_overlay_names_only_keys_that_differ_and_dvc_applies_it_as_written(name, tmp_path):
    from dvc.utils.hydra import apply_overrides

    flat = overlay.read(ROOT / name, ROOT / "params.yaml")
    shipped = overlay.leaves(_raw())
    assert [k for k, v in flat.items() if shipped[k] == v] == []  # nothing restated
    copy = tmp_path / "params.yaml"
    copy.write_text((ROOT / "params.yaml").read_text())
    apply_overrides(copy, overlay.set_args(flat)[1::2])  # what `dvc exp run -S ...` does to params.yaml
    assert load_params(copy) == load_params(ROOT / "params.yaml", flat)


def test_an_overlay_key_params_yaml_lacks_is_one_line_naming_it(tmp_path):
    bad = tmp_path / "over.yaml"
    bad.write_text("finetune: {epochz: 3}\n")
    with pytest.raises(ConfigError, match=r"over.yaml: finetune.epochz = 3: expected a key of .*params.yaml"):
        overlay.read(bad, ROOT / "params.yaml")
    bad.write_text("finetune: {epochs: 0}\n")
    with pytest.raises(ConfigError, match=r"over.yaml over .*params.yaml: finetune.epochs = 0: expected an integer >= 1"):
        overlay.read(bad, ROOT / "params.yaml")


def test_the_tests_base_params_have_the_shipped_keys():
    """tests/params.yaml (what every fixture builds on) has exactly params.yaml's keys, so a key added to
    the shipped file reaches the tests' configuration too, while its values stay the tests' own."""
    def keys(tree, prefix=""):
        return {f"{prefix}{k}" for k in tree} | {x for k, v in tree.items() if isinstance(v, dict)
                                                 for x in keys(v, f"{prefix}{k}.")}
    shipped, base = (yaml.safe_load((ROOT / name).read_text()) for name in ("params.yaml", "tests/params.yaml"))
    assert keys(base) == keys(shipped)


def test_one_recipe_type_for_au_and_fer_finetuning():
    """The loop takes one Recipe: finetune is one; fer builds one per dataset from its schedule and
    the recipe keys the FER datasets share."""
    p = load_params(ROOT / "params.yaml", {"fer.affectnet.epochs": 7, "fer.layer_decay": 0.5})
    assert isinstance(p.finetune, Recipe)
    r = p.fer.recipe("affectnet")
    assert type(r) is Recipe and (r.epochs, r.blr, r.layer_decay, r.augment) == (7, p.fer.affectnet.blr, 0.5, p.fer.augment)
    assert p.fer.recipe("rafdb").epochs == p.fer.rafdb.epochs != 7
    assert {f.name for f in dataclasses.fields(Recipe)} <= {f.name for f in dataclasses.fields(type(p.finetune))}
