"""Store journal recovery: a crash after any step leaves the old or the new version, never between."""

import os

import pytest

from robot_platform.deploy.errors import StoreError
from robot_platform.deploy.store import (
    JOURNAL,
    PHASE_ACTIVATED,
    PHASE_INSTALLED,
    PHASE_STAGING,
    PackageStore,
)


def stage(store, package, job, version, content="v"):
    staged = store.staging_dir(package, job)
    staged.mkdir(parents=True)
    (staged / "manifest.yaml").write_text(f"version: {version}\n{content}")
    return staged


def deploy(store, package, version, job=None):
    job = job or f"job-{version}"
    journal = store.begin(job, package, version)
    store.install(journal, stage(store, package, job, version), {"sha256": "x", "kind": "app"})
    store.activate(journal, package, version)
    store.commit(journal)


def assert_consistent(store, package, expected_active):
    assert store.active_version(package) == expected_active
    active = store.active_dir(package)
    if expected_active:
        assert (active / "manifest.yaml").read_text().startswith(f"version: {expected_active}")
    assert not (store.package_dir(package) / JOURNAL).exists()
    assert not (store.package_dir(package) / "staging").exists()
    vdir = store.package_dir(package) / "versions"
    for version in os.listdir(vdir) if vdir.exists() else []:
        if not version.endswith(".json"):
            assert store.install_record(package, version) is not None, f"half-installed {version} left"


def test_deploy_switch_and_previous(tmp_path):
    store = PackageStore(tmp_path)
    deploy(store, "app", "1.0.0")
    deploy(store, "app", "1.0.1")  # dotted versions: each has its own install record
    assert store.active_version("app") == "1.0.1"
    assert os.readlink(store.package_dir("app") / "current") == "versions/1.0.1"
    assert store.previous_version("app") == "1.0.0"
    assert store.installed_versions("app") == ["1.0.0", "1.0.1"]
    info = store.info("app")
    assert (info.kind, info.active_version, info.versions) == ("app", "1.0.1", ("1.0.0", "1.0.1"))
    with pytest.raises(StoreError, match="immutable"):
        journal = store.begin("again", "app", "1.0.1")
        store.install(journal, stage(store, "app", "again", "1.0.1"), {})


@pytest.mark.parametrize("crash_after", ["begin", "staged", "installed", "activated", "activated_no_state"])
def test_crash_at_each_step_recovers_to_old_version(tmp_path, crash_after):
    store = PackageStore(tmp_path)
    deploy(store, "app", "1.0")
    journal = store.begin("job-2", "app", "2.0")
    if crash_after != "begin":
        staged = stage(store, "app", "job-2", "2.0")
    if crash_after in ("installed", "activated", "activated_no_state"):
        store.install(journal, staged, {"sha256": "y", "kind": "app"})
        assert journal.phase == PHASE_INSTALLED
    if crash_after == "activated":
        store.activate(journal, "app", "2.0")
        assert store.active_version("app") == "2.0"
    if crash_after == "activated_no_state":
        store.advance(journal, PHASE_ACTIVATED)
        store.switch("app", "2.0")  # crash before the history was written
    # --- power loss here; a new process starts ---
    recovered = PackageStore(tmp_path).recover()
    assert [(r.job_id, r.active_version) for r in recovered] == [("job-2", "1.0")]
    assert_consistent(store, "app", "1.0")
    assert store.installed_versions("app") == ["1.0"]
    deploy(store, "app", "2.0", job="job-3")  # and the next deployment works
    assert_consistent(store, "app", "2.0")


def test_crash_mid_rename_of_version_dir(tmp_path):
    """A version dir without an install record (crash between rename and record) is removed."""
    store = PackageStore(tmp_path)
    deploy(store, "app", "1.0")
    journal = store.begin("job-2", "app", "2.0")
    journal.created_version = True
    store.advance(journal, PHASE_STAGING)
    os.rename(stage(store, "app", "job-2", "2.0"), store.version_dir("app", "2.0"))
    PackageStore(tmp_path).recover()
    assert_consistent(store, "app", "1.0")
    assert not store.version_dir("app", "2.0").exists()


def test_crash_during_first_install_leaves_nothing_active(tmp_path):
    store = PackageStore(tmp_path)
    journal = store.begin("job-1", "fresh", "1.0")
    store.install(journal, stage(store, "fresh", "job-1", "1.0"), {"kind": "function"})
    store.activate(journal, "fresh", "1.0")
    PackageStore(tmp_path).recover()
    assert_consistent(store, "fresh", "")
    assert store.installed_versions("fresh") == []
    assert not store.package_dir("fresh").exists()  # a package with no version leaves no directory


def test_leftover_tmp_symlink_is_cleaned_and_current_kept(tmp_path):
    store = PackageStore(tmp_path)
    deploy(store, "app", "1.0")
    os.symlink("versions/2.0", store.package_dir("app") / ".current.tmp")  # crash between symlink and rename
    assert PackageStore(tmp_path).recover() == []
    assert not (store.package_dir("app") / ".current.tmp").is_symlink()
    assert_consistent(store, "app", "1.0")


def test_prune_keeps_active_and_newest(tmp_path):
    store = PackageStore(tmp_path, keep_versions=2)
    for version in ("1.0.1", "1.0.2", "1.0.3", "1.0.4"):
        deploy(store, "app", version)
    assert store.prune("app") == ["1.0.1", "1.0.2"]
    assert store.installed_versions("app") == ["1.0.3", "1.0.4"]  # dotted names: records not shared
    with pytest.raises(StoreError, match="active"):
        store.remove_version("app", "1.0.4")


def test_names_are_checked(tmp_path):
    store = PackageStore(tmp_path)
    with pytest.raises(StoreError):
        store.package_dir("../x")
    with pytest.raises(StoreError):
        store.version_dir("app", "../../etc")
