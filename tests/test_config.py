from mpi4py import MPI  # noqa: F401  (before anything that may load dolfinx)

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from solver.config import Config, MeshConfig, config_from_dict, load_config
from solver.model.domain import Ball, Box
from solver.errors import InputError

PROBLEMS = sorted((Path(__file__).parent.parent / "problems").glob("*.toml"))


def test_shipped_problems_exist():
    names = {p.name for p in PROBLEMS}
    assert {"default.toml", "rotation_disk.toml", "box3d.toml"} <= names


@pytest.mark.parametrize("path", PROBLEMS, ids=lambda p: p.name)
def test_round_trip(path):
    config = load_config(path)
    assert config.source == str(path)
    assert config_from_dict(config.to_dict()) == config
    assert config_from_dict(tomllib.loads(config.to_toml())) == config
    assert config.domain_object().dim == config.dim
    assert config.terminal_object()(config.domain_object().grid(3)).shape[1] >= 1


def test_shipped_problems_say_what_they_claim():
    default = load_config(PROBLEMS[0].parent / "default.toml")
    assert default.domain_object() == Box((-1.0, -1.0), (1.0, 1.0))
    assert (default.mesh.cells, default.mesh.degree) == (32, 1)
    f = default.field
    assert (f.kind, f.width, f.activation, f.slabs, f.T) == ("mlp", 8, "tanh", 4, 1.0)
    disk = load_config(PROBLEMS[0].parent / "rotation_disk.toml")
    assert disk.domain_object() == Ball((0.0, 0.0), 1.0)
    assert disk.field.kind == "rotation"
    assert disk.field.omega * disk.field.T == pytest.approx(6.283185307179586)
    assert disk.field.width is None
    assert load_config(PROBLEMS[0].parent / "box3d.toml").dim == 3


def test_one_layer_field_round_trips():
    config = config_from_dict({"field": dict(kind="mlp1", activation="relu", slabs=3)})
    assert (config.field.kind, config.field.width, config.field.slabs) == ("mlp1", None, 3)
    assert config_from_dict(tomllib.loads(config.to_toml())) == config


def test_a_csv_without_points_takes_every_row_and_round_trips(tmp_path):
    (tmp_path / "d.csv").write_text("x1,x2,label\n0,0,0\n1,1,1\n")
    path = tmp_path / "c.toml"
    path.write_text('[data]\nkind = "csv"\npath = "d.csv"\n')
    config = load_config(path)
    assert config.data.points is None  # all rows, not the generated kinds' 400
    assert config_from_dict(tomllib.loads(config.to_toml())).data == config.data
    path.write_text('[data]\nkind = "csv"\npath = "d.csv"\npoints = 2\n')
    assert load_config(path).data.points == 2


def test_defaults_are_a_working_problem():
    config = config_from_dict({})
    assert config == Config()
    assert config.domain.kind == "box" and config.dim == 2
    assert config.terminal.kind == "gaussian"
    assert config.terminal_object().num_components == 1
    assert config.compare.refine == () and config.solver.dt is None
    assert config.solver.checkpoint_every == 4 and config.compare.cells is None


def test_partial_sections_fill_defaults():
    config = config_from_dict(
        {"domain": {"kind": "ball", "radius": 2.0}, "terminal": {"kind": "softmax"}}
    )
    assert config.domain.center == (0.0, 0.0, 0.0) and config.dim == 3
    assert config.terminal_object().num_components == 2
    box = config_from_dict({"domain": {"lower": [0, 0, 0]}})
    assert box.domain.upper == (1.0, 1.0, 1.0)
    # The default Gaussian sits in the middle of the domain.
    assert box.terminal.params["center"] == (0.5, 0.5, 0.5)


@pytest.mark.serial  # a child python inside an MPI job would try to join it
def test_config_does_not_import_dolfinx():
    code = "import sys; import solver.config; assert 'dolfinx' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


# name, file text, key (or fragment) the message must contain, line it must point at
BAD = [
    ("syntax", "[mesh]\ncells = 8\n\n[field]\nwidth = = 3\n", "invalid TOML", 5),
    ("typo", "[field]\nkind = 'mlp'\nwidht = 3\n", "field.widht", 3),
    ("wrong_type", "[mesh]\ncells = '32'\n", "mesh.cells", 2),
    ("bool_as_int", "[mesh]\ndegree = true\n", "mesh.degree", 2),
    ("range", "[mesh]\ndegree = 4\n", "mesh.degree", 2),
    ("activation", "[field]\nactivation = 'gelu'\n", "field.activation", 2),
    ("rotation_on_box", "[field]\nkind = 'rotation'\n", "field.kind", 2),
    ("mlp_key_on_rotation", "[domain]\nkind='disk'\n[field]\nkind='rotation'\nwidth=4\n",
     "field.width", 5),
    ("width_on_mlp1", "[field]\nkind = 'mlp1'\nwidth = 4\n", "field.width", 3),  # W is d×d
    ("box_key_on_disk", "[domain]\nkind = 'disk'\nlower = [0, 0]\n", "domain.lower", 3),
    ("dims", "[domain]\nlower = [0, 0, 0]\nupper = [1, 1]\n", "domain.upper", 3),
    ("terminal_dim", "[terminal]\ncenter = [0, 0, 0]\n", "terminal.center", 2),
    ("terminal_key", "[terminal]\nkind = 'sine'\nsigma = 1\n", "terminal.sigma", 3),
    ("cfl", "[solver]\ncfl = 0\n", "solver.cfl", 2),
    ("stage_memory", "[solver]\ncfl = 1.0\nstage_memory = -1\n", "solver.stage_memory", 3),
    ("stage_memory_word", "[solver]\nstage_memory = 'lots'\n", "solver.stage_memory", 2),
    ("refine", "[compare]\nrefine = [16, 8]\n", "compare.refine", 2),
    ("compare_degree", "[compare]\ndegree = 4\n", "compare.degree", 2),
    ("compare_cells", "[domain]\nkind = 'disk'\n[compare]\ncells = 1\n", "compare.cells", 4),
    ("section", "[optimizer]\nsteps = 3\n", "optimizer", 1),
]


@pytest.mark.parametrize("name, text, key, line", BAD, ids=[b[0] for b in BAD])
def test_bad_input_names_key_file_and_line(tmp_path, name, text, key, line):
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_config(path)
    message = str(info.value)
    assert key in message
    assert f"{path}:{line}" in message
    assert info.value.source == f"{path}:{line}"


def test_unknown_key_lists_valid_keys(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text("[mesh]\ncell = 8\n")
    with pytest.raises(InputError, match=r"mesh\.cell.*Valid keys: \['cells', 'degree'\]"):
        load_config(path)


def test_bad_activation_names_valid_ones(tmp_path):
    path = tmp_path / "act.toml"
    path.write_text("[field]\nactivation = 'gelu'\n")
    with pytest.raises(InputError, match=r"\['relu', 'tanh', 'softplus', 'sigmoid'\], got 'gelu'"):
        load_config(path)


def test_rotation_on_a_box_says_why(tmp_path):
    path = tmp_path / "rot.toml"
    path.write_text("[field]\nkind = 'rotation'\n")
    with pytest.raises(InputError, match=r"only valid on a disk or ball.*domain\.kind = \"box\""):
        load_config(path)


def test_missing_file(tmp_path):
    path = tmp_path / "nothere.toml"
    with pytest.raises(InputError, match="not found") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_dict_source_is_named():
    with pytest.raises(InputError, match=r"^<cli>: mesh\.cells: expected an integer >= 1, got 0$"):
        config_from_dict({"mesh": {"cells": 0}}, source="<cli>")


def test_library_defaults_are_the_configs():
    from solver.config import DataConfig, SolverConfig, TrainConfig
    from solver.learn import optimize
    from solver.model import data

    assert DataConfig.test_fraction == data.DEFAULT_TEST_FRACTION
    assert DataConfig.margin == data.DEFAULT_MARGIN
    assert TrainConfig.memory == optimize.DEFAULT_MEMORY
    assert TrainConfig.learning_rate == optimize.DEFAULT_LEARNING_RATE
    assert TrainConfig.max_step == optimize.DEFAULT_MAX_STEP
    assert SolverConfig.dt is None


def test_values_of_earlier_run_directories_read_as_absent():
    """config.toml of runs written before dt/checkpoint_every/compare.cells had no sentinels."""
    old = {
        "field": {"time": "constant"},
        "solver": {"dt": 0.0, "checkpoint_every": 0},
        "compare": {"cells": 0, "degree": 0},
    }
    assert config_from_dict(old) == Config()
    with pytest.raises(InputError, match=r"field\.time.*Valid keys"):
        config_from_dict({"field": {"time": "linear"}})


@pytest.mark.parametrize("section, key, value, message", [
    ("solver", "checkpoint_every", -1, r"solver\.checkpoint_every: expected an integer >= 1"),
    ("solver", "dt", -1.0, r"solver\.dt: expected a number > 0\.0"),
    ("data", "test_fraction", 1.0, r"data\.test_fraction: expected a number in \[0\.0, 1\.0\)"),
    ("data", "margin", 1.0, r"data\.margin: expected a number in \(0\.0, 1\.0\)"),
    ("data", "points", 1, r"data\.points: expected an integer >= 2, got 1"),
    ("data", "label_noise", -0.1, r"data\.label_noise: expected a number in \[0\.0, 1\.0\], got -0\.1"),
])
def test_checks_shared_with_the_library(section, key, value, message):
    with pytest.raises(InputError, match=message):
        config_from_dict({section: {key: value}})


@pytest.mark.serial  # a subprocess: under mpirun it would inherit the rank's MPI environment
def test_docs_table_of_keys_is_current():
    """The table of keys and defaults in docs/problem-files.md is the one scripts/config_table.py
    generates from the dataclasses (regenerate: python scripts/config_table.py --write
    docs/problem-files.md)."""
    root = Path(__file__).parent.parent
    page = root / "docs" / "problem-files.md"
    done = subprocess.run([sys.executable, str(root / "scripts" / "config_table.py"), "--check",
                           str(page)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    # and the table holds every key of every dataclass section, with the resolved default
    from solver.config import SECTION_KEYS

    text = page.read_text(encoding="utf-8")
    for section, keys in SECTION_KEYS.items():
        for key in keys:
            assert f"| `{key}` |" in text, f"{section}.{key}"
    assert f"| `test_fraction` | `{config_from_dict({}).data.test_fraction:g}` |" in text


@pytest.mark.parametrize("sections, absent", [("TRAIN_SECTIONS", {"terminal"}),
                                              ("COMPARE_SECTIONS", {"data", "train"})])
def test_a_command_writes_only_the_sections_it_reads(sections, absent):
    """A run's config.toml holds its command's sections only (no [terminal] in a training run),
    and reads back to the same values in them."""
    import solver.config as cfg

    config = load_config(PROBLEMS[0].parent / "moons.toml")
    text = config.to_toml(getattr(cfg, sections))
    written = tomllib.loads(text)
    assert not absent & written.keys() and written.keys() == set(getattr(cfg, sections))
    assert config_from_dict(written).to_dict(getattr(cfg, sections)) == config.to_dict(getattr(cfg, sections))


def test_the_domain_and_mesh_follow_the_data_dimension(tmp_path):
    """A problem file of one section, [data] kind = "csv" and its path: Ω's dimension is the
    file's number of features, and without [mesh] the mesh is the one of that dimension
    (``DEFAULT_MESH`` of the default scheme "sl": 16² P2 in 2D, the coarse P2 start 5³ in 3D)."""
    from solver.config import DEFAULT_MESH

    for features in (2, 3):
        names = [f"x{j + 1}" for j in range(features)]
        (tmp_path / f"d{features}.csv").write_text(",".join(names + ["label"]) + "\n" + "0," * features + "1\n")
        problem = tmp_path / f"p{features}.toml"
        problem.write_text(f'[data]\nkind = "csv"\npath = "d{features}.csv"\n')
        config = load_config(problem)
        assert config.dim == features and config.domain.lower == (-1.0,) * features
        assert (config.mesh.cells, config.mesh.degree) == DEFAULT_MESH[("sl", features)]
    assert DEFAULT_MESH[("sl", 2)] == (16, 2) and DEFAULT_MESH[("sl", 3)] == (5, 2)
    assert DEFAULT_MESH[("rk3", 2)] == (32, 1) and DEFAULT_MESH[("rk3", 3)] == (5, 2)
    # A [mesh] key given: the other keeps MeshConfig's default; a [domain] given is kept.
    config = config_from_dict(dict(data=dict(kind="csv", path=str(tmp_path / "d3.csv")), mesh=dict(cells=7)))
    assert (config.dim, config.mesh.cells, config.mesh.degree) == (3, 7, 1)
    config = config_from_dict(dict(data=dict(kind="csv", path=str(tmp_path / "d3.csv")), domain=dict(kind="disk")))
    assert config.dim == 2
    # augment_dim = 3 asks for a 3D Ω; a missing file leaves the default 2D (its error comes later).
    assert config_from_dict(dict(data=dict(kind="circles", augment_dim=3))).dim == 3
    assert config_from_dict(dict(data=dict(kind="csv", path=str(tmp_path / "none.csv")))).dim == 2
    assert config_from_dict({}).dim == 2 and config_from_dict({}).mesh == MeshConfig(16, 2)


@pytest.mark.timeout(60)  # reading /dev/zero line by line would never end
def test_the_dimension_of_a_csv_is_read_from_its_header_only(tmp_path):
    """Ω's dimension comes from the first 64 kB of a regular file: /dev/zero, a directory, a file
    of NUL bytes or one without a header give the default 2D (the data's checks report them)."""
    (tmp_path / "nul.csv").write_bytes(b"\0" * 100)
    for path in ("/dev/zero", str(tmp_path), str(tmp_path / "nul.csv")):
        assert config_from_dict(dict(data=dict(kind="csv", path=path))).dim == 2
