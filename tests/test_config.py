import pytest

from depthforge.config import RECIPE_DIR, ConfigError, load_config


def test_bundled_baseline_recipe_is_the_report():
    cfg = load_config("baseline")
    assert cfg.model.name == "baseline" and cfg.model.pretrained == "imagenet"
    assert cfg.loss.terms == {"rmse": 0.6, "ssim": 0.4}
    o = cfg.optim
    assert (o.name, o.lr, o.scheduler, o.base_lr, o.max_lr, o.step_size_up, o.step_size_down, o.cyclic_mode) == (
        "adam", 1e-3, "cyclic", 1e-3, 1e-2, 2000, 2000, "triangular2")
    assert cfg.data.batch_size == 16 and cfg.data.max_depth == 20.0


def test_overrides_parse_values_and_nest():
    cfg = load_config("baseline", ["optim.lr=1e-4", "data.crop=[100,200]", "loss.terms={l1: 1.0}"])
    assert cfg.optim.lr == 1e-4 and cfg.data.crop == [100, 200] and cfg.loss.terms == {"l1": 1.0}


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match="unknown key.*'lrr'"):
        load_config(overrides=["optim.lrr=1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {batchsize: 4}\n")
    with pytest.raises(ConfigError, match="bad.yaml.*batchsize"):
        load_config(bad)
    with pytest.raises(ConfigError, match="bundled"):
        load_config("no-such-recipe")


@pytest.mark.parametrize("override, message", [
    ("data.batch_size=abc", r"data.batch_size='abc' \(config\): expected a whole number, got str; e.g. data.batch_size=8"),
    ("train.epochs=2.5", r"train.epochs=2.5 .*expected a whole number, got float"),
    ("optim.lr=fast", r"optim.lr='fast' .*expected a number"),
    ("train.max_minutes=soon", r"train.max_minutes='soon' .*expected a number or null"),
    ("data.crop=7", r"data.crop=7 .*expected a list of a whole number or null"),
    ("train.progress_bar=maybe", r"train.progress_bar='maybe' .*expected true or false"),
])
def test_a_wrongly_typed_value_names_key_value_and_type(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_a_wrongly_typed_recipe_value_names_the_file_and_the_cli_exits_2(tmp_path, capsys):
    from depthforge.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {batch_size: [4]}\n")
    with pytest.raises(ConfigError, match=r"data.batch_size=\[4\] \(.*bad.yaml\)"):
        load_config(bad)
    assert load_config(overrides=["train.epochs=3.0", "optim.lr=1"]).train.epochs == 3  # integral values fit
    assert main(["train", "data.batch_size=abc"]) == 2
    assert "data.batch_size='abc'" in capsys.readouterr().err


@pytest.mark.parametrize("recipe", sorted(p.stem for p in RECIPE_DIR.glob("*.yaml")))
def test_bundled_recipes_build(recipe):
    from depthforge.models import list_models
    from depthforge.losses import LOSSES, MODEL_LOSSES, UNCERTAINTY_LOSSES
    cfg = load_config(recipe)
    assert cfg.model.name in list_models() and set(cfg.loss.terms) <= {*LOSSES, *UNCERTAINTY_LOSSES, *MODEL_LOSSES}


def test_the_recipes_the_docs_name_are_bundled():
    assert {"baseline", "cpu", "gpu", "small-real", "diffusion", "realtime"} <= {p.stem for p in RECIPE_DIR.glob("*.yaml")}


def test_the_realtime_recipe_is_the_cpu_recipe_on_another_model():
    cpu, realtime = load_config("cpu"), load_config("realtime")
    assert realtime.model.name == "realtime_efficientnet_lite0" != cpu.model.name
    realtime.model.name = cpu.model.name
    assert realtime == cpu


def test_dotted_override_sets_one_key_of_a_mapping():
    # A recipe's kwargs / loss terms survive an override of one of their keys...
    cfg = load_config("cpu", ["model.kwargs.frozen_stages=1", "loss.terms.l1=0.5"])
    recipe = load_config("cpu")
    assert cfg.model.kwargs == {**recipe.model.kwargs, "frozen_stages": 1}
    assert cfg.loss.terms == {**recipe.loss.terms, "l1": 0.5}
    # ... and naming the whole mapping replaces it.
    cfg = load_config("cpu", ["model.kwargs={head: linear}"])
    assert cfg.model.kwargs == {"head": "linear"}
