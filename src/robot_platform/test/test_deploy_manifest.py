import pytest
import yaml

from robot_platform.deploy.errors import ManifestError
from robot_platform.deploy.manifest import load_manifest, parse_manifest, parse_manifest_text

BASE_FN = {"name": "hello_fn", "version": "1.0.0", "kind": "function", "runtime": "python3", "handler": "handler.main"}
BASE_APP = {
    "name": "nav_app",
    "version": "2.1.0-rc1",
    "kind": "app",
    "runtime": "python3",
    "run": ["python3", "app.py"],
    "health_check": {"command": ["python3", "check.py"]},
}


def test_function_manifest_parses_with_defaults():
    m = parse_manifest(dict(BASE_FN, environment={"A": 1}, limits={"memory_mb": 128}))
    assert (m.name, m.kind, m.handler_module, m.handler_function) == ("hello_fn", "function", "handler", "main")
    assert m.environment == {"A": "1"}
    assert m.limits.memory_mb == 128 and m.limits.open_files == 256


def test_app_manifest_parses():
    m = parse_manifest(dict(BASE_APP, install=[["python3", "-m", "pip", "--version"]], restart="always"))
    assert m.run == ("python3", "app.py")
    assert m.install == (("python3", "-m", "pip", "--version"),)
    assert m.health_check.command == ("python3", "check.py")


@pytest.mark.parametrize("field", ["name", "version", "kind", "runtime", "handler"])
def test_missing_required_field_is_named(field):
    data = dict(BASE_FN)
    del data[field]
    with pytest.raises(ManifestError) as err:
        parse_manifest(data)
    assert err.value.field == field


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"name": "../evil"}, "name"),
        ({"name": "Bad Name"}, "name"),
        ({"version": "1/2"}, "version"),
        ({"version": "1..2"}, "version"),
        ({"kind": "daemon"}, "kind"),
        ({"runtime": "native"}, "runtime"),
        ({"handler": "nodot"}, "handler"),
        ({"handler": "os.system; rm"}, "handler"),
        ({"timeout_s": -1}, "timeout_s"),
        ({"timeout_s": "10"}, "timeout_s"),
        ({"limits": {"memory_mb": -5}}, "limits.memory_mb"),
        ({"limits": {"gpu": 1}}, "limits"),
        ({"environment": {"BAD-NAME": "x"}}, "environment"),
        ({"unknown_key": 1}, ""),
        ({"run": ["python3", "x.py"]}, "run"),
        ({"format": 2}, "format"),
    ],
)
def test_invalid_function_fields(patch, field):
    with pytest.raises(ManifestError) as err:
        parse_manifest(dict(BASE_FN, **patch))
    assert err.value.field == field


def test_shell_strings_are_refused():
    with pytest.raises(ManifestError, match="argv list"):
        parse_manifest(dict(BASE_APP, run="python3 app.py && rm -rf /"))
    with pytest.raises(ManifestError) as err:
        parse_manifest(dict(BASE_APP, install=["pip install x"]))
    assert err.value.field == "install[0]"


def test_app_requires_run():
    data = dict(BASE_APP)
    del data["run"]
    with pytest.raises(ManifestError) as err:
        parse_manifest(data)
    assert err.value.field == "run"


def test_yaml_errors_and_unsafe_tags_are_manifest_errors(tmp_path):
    with pytest.raises(ManifestError):
        parse_manifest_text("name: [unclosed")
    with pytest.raises(ManifestError):
        parse_manifest_text("!!python/object/apply:os.system ['true']")
    with pytest.raises(ManifestError, match="missing"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump(BASE_FN))
    assert load_manifest(tmp_path).name == "hello_fn"
