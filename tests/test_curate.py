"""Face9M curation on the tiny synthetic world: readers, filters, flaws, determinism, resume."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import webdataset as wds
import yaml
from PIL import Image, ImageOps

from pipeline.config import ConfigError, load_params
from pipeline.curate.curate import KILL_AFTER_SHARDS, curate, read_keys
from pipeline.curate.images import load_face
from pipeline.curate.plan import apply_filters
from pipeline.curate.scan import scan
from pipeline.curate.sources import read_source
from pipeline.curate.sources.base import make_key
from pipeline.synth import sources as synth_sources
from pipeline.synth.synthesize import source_root
from tests.conftest import NAMES, PARAMS, curate_overrides


@pytest.fixture(scope="module")
def world(tiny_world):
    params, out = tiny_world
    truth = pd.read_csv(out / "truth" / "sources.csv", keep_default_na=False)
    truth["key"] = [make_key(s, p) for s, p in zip(truth.source, truth.path)]
    return out, truth



def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_readers_parse_their_layouts(world):
    out, truth = world
    identities = {"celeba": 6, "vggface2": 6, "casia_webface": 6, "megaface": 6, "umdfaces": 6}
    for name in NAMES:
        records = list(read_source(name, source_root(out, name)))
        expected = truth[truth.source == name]
        assert sorted(r.key for r in records) == sorted(expected.key), name
        assert all("." not in r.key and r.key.startswith(name) for r in records)
        assert len({r.identity for r in records} - {""}) == identities.get(name, 0), name
    assert len(list(read_source("celeba", source_root(out, "celeba"), max_images=5))) == 5
    keys = [r.key for n in NAMES for r in read_source(n, source_root(out, n))]
    assert len(keys) == len(set(keys))


def test_header_sizes_equal_decoded_sizes(world):
    out, truth = world
    compared, truncated = 0, 0
    for name in NAMES:
        for rec in read_source(name, source_root(out, name)):
            if rec.error or rec.crop:
                continue
            if rec.member:
                import tarfile
                with tarfile.open(rec.path) as tar:
                    data = tar.extractfile(rec.member).read()
            else:
                data = Path(rec.path).read_bytes()
            try:
                im = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
            except OSError:  # truncated: the header is fine, the pixels are not
                truncated += 1
                continue
            assert im.size == (rec.width, rec.height), rec.path
            compared += 1
    # every flawless file was compared; only injected truncated/corrupt files were passed over
    clean = ((truth.flaw == "") & (truth.source != "umdfaces")).sum()
    assert compared >= clean > 50 and truncated <= truth.flaw.isin(["truncated", "corrupt"]).sum(), (compared, truncated)


def _manifest(sizes):
    return pd.DataFrame([{"key": f"s-{i}", "source": "s", "path": f"{i}.jpg", "member": "", "width": w, "height": h,
                          "error": ""} for i, (w, h) in enumerate(sizes)])


def test_aspect_rule_keeps_exactly_one_and_a_half(params):
    m = _manifest([(150, 100), (100, 150), (1501, 1000), (100, 151), (100, 100)])
    sha = pd.Series({k: k for k in m.key})
    kept, rejects, _ = apply_filters(m, params.curate, sha)
    assert list(kept.key) == ["s-0", "s-1", "s-4"]
    assert set(rejects.reason) == {"aspect"}


def test_duplicates_keep_the_first_listed(params):
    m = _manifest([(100, 100)] * 3)
    kept, rejects, _ = apply_filters(m, params.curate, pd.Series({"s-0": "b", "s-1": "a", "s-2": "b"}))
    assert sorted(kept.key) == ["s-0", "s-1"]
    assert rejects[["key", "reason", "duplicate_of"]].values.tolist() == [["s-2", "duplicate", "s-0"]]


def test_every_flaw_gets_its_expected_outcome(world, curated):
    _, truth = world
    _, base = curated
    rejects = pd.read_parquet(base / "face9m" / "rejects.parquet")
    merged = truth.merge(rejects[["key", "reason"]], on="key", how="left").fillna({"reason": ""})
    got = ["reject:" + r if r else "keep" for r in merged.reason]
    want = merged.expect.replace({"convert": "keep"})
    wrong = merged[np.array(got) != want.values]
    assert wrong.empty, wrong[["source", "path", "flaw", "expect", "reason"]].to_string()
    kept_keys = set(read_keys(base / "face9m" / "shards"))
    assert kept_keys == set(truth.key[want == "keep"])  # nothing silently dropped, nothing extra


def test_converted_images_match_the_clean_render(world, curated):
    """EXIF orientation applied, colour modes converted: the curated image is the face upright."""
    out, truth = world
    params, base = curated
    samples = {s["__key__"]: s["jpg"] for s in wds.WebDataset([str(p) for p in sorted((base / "face9m" / "shards").glob("*.tar"))],
                                                                shardshuffle=False)}
    converted = truth[truth.expect == "convert"]
    assert set(converted.flaw) == {"grayscale", "cmyk", "exif_rotated", "rgba", "png16", "palette"}
    for row in converted.itertuples():
        # flaws_per_kind is 1, so the flaw names the item within its source
        item = next(it for it in synth_sources.plan_items(params.synth, row.source) if it.flaw == row.flaw)
        clean, (x, y, w, h) = synth_sources.make_image(params.synth, row.source, item)
        if row.source == "umdfaces":  # curated as the face box, like the reader's crop
            clean = clean[max(0, round(y)):round(y + h), max(0, round(x)):round(x + w)]
        expected = cv2.resize(cv2.cvtColor(clean, cv2.COLOR_BGR2RGB), (224, 224), interpolation=cv2.INTER_AREA).astype(float)
        got = cv2.cvtColor(cv2.imdecode(np.frombuffer(samples[row.key], np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(float)
        if row.flaw == "grayscale":
            grey = cv2.cvtColor(expected.astype(np.uint8), cv2.COLOR_RGB2GRAY).astype(float)
            expected = np.repeat(grey[..., None], 3, axis=2)
        if row.flaw == "rgba":
            continue  # background replaced by white on purpose; checked below
        error = np.abs(got - expected).mean()
        rotated = np.abs(np.rot90(got) - expected).mean()
        assert error < 12 and error < rotated / 2, (row.flaw, row.path, error, rotated)


def test_rgba_is_composited_over_white(world):
    out, truth = world
    row = truth[truth.flaw == "rgba"].iloc[0]
    rgb = load_face((source_root(out, row.source) / row.path).read_bytes(), 224)
    assert (rgb[0, 0] >= 250).all() and rgb.dtype == np.uint8 and rgb.shape == (224, 224, 3)


def test_sizes_json_and_stats_match_the_tars(curated):
    _, base = curated
    sizes = json.loads((base / "face9m" / "sizes.json").read_text())
    tars = sorted((base / "face9m" / "shards").glob("*.tar"))
    assert sorted(sizes) == [t.name for t in tars] and len(tars) > 1
    for tar in tars:
        keys = [s["__key__"] for s in wds.WebDataset(str(tar), shardshuffle=False)]
        assert len(keys) == sizes[tar.name] == len(set(keys))
        stats = json.loads((base / "face9m" / "stats" / f"{tar.stem}.json").read_text())
        assert stats["sha256"] == hashlib.sha256(tar.read_bytes()).hexdigest() and stats["samples"] == len(keys)
    keys = read_keys(base / "face9m" / "shards")
    assert len(keys) == len(set(keys)) == sum(sizes.values())
    metrics = json.loads((base / "curation.json").read_text())
    assert metrics["total"]["kept"] == len(keys)
    assert all(v["kept"] + sum(v["dropped"].values()) == v["scanned"] for v in metrics["sources"].values())
    assert Image.open(base / "samples.png").size[0] > 500


@pytest.mark.slow
def test_same_bytes_with_one_or_two_workers(world, curated, tmp_path):
    out, _ = world
    _, base = curated
    params = load_params(PARAMS, curate_overrides(out, **{"ray.num_cpus": 1}))
    curate(params, base / "manifest.parquet", tmp_path / "face9m", tmp_path / "c.json", tmp_path / "s.png")
    assert _digests(tmp_path / "face9m" / "shards") == _digests(base / "face9m" / "shards")
    assert _digests(tmp_path / "face9m" / "stats") == _digests(base / "face9m" / "stats")
    for name in ("sizes.json", "rejects.parquet", "plan.parquet"):
        assert (tmp_path / "face9m" / name).read_bytes() == (base / "face9m" / name).read_bytes()


@pytest.mark.slow
def test_killed_run_resumes_to_identical_bytes(world, curated, tmp_path):
    out, _ = world
    _, base = curated
    data = yaml.safe_load((PARAMS).read_text())
    for dotted, value in curate_overrides(out, **{"ray.num_cpus": 1}).items():
        node = data
        *parents, last = dotted.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "data" / "face9m").mkdir(parents=True)
    (tmp_path / "data" / "face9m" / "manifest.parquet").write_bytes((base / "manifest.parquet").read_bytes())
    cmd = [sys.executable, "-m", "pipeline", "curate"]
    shards = tmp_path / "data" / "face9m" / "shards"
    # the driver kills itself (SIGKILL) once 2 shards are finished: no race with the clock
    killed = subprocess.run(cmd, cwd=tmp_path, capture_output=True, env={**os.environ, KILL_AFTER_SHARDS: "2"})
    assert killed.returncode == -signal.SIGKILL
    finished = len(list(shards.glob("*.tar")))
    total = len(list((base / "face9m" / "shards").glob("*.tar")))
    assert 2 <= finished < total, f"{finished} of {total} shards written before the kill"
    time.sleep(3)  # Ray workers live outside the driver's process group: a task in flight may still finish
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    reused = int(re.search(r"\((\d+) already finished\)", done.stdout).group(1))
    assert finished <= reused < total, done.stdout
    assert _digests(shards) == _digests(base / "face9m" / "shards")
    assert (tmp_path / "data" / "face9m" / "sizes.json").read_bytes() == (base / "face9m" / "sizes.json").read_bytes()


def test_missing_root_names_the_param(world, tmp_path):
    out, _ = world
    params = load_params(PARAMS, curate_overrides(out, **{"sources.ffhq.root": str(tmp_path / "nope")}))
    with pytest.raises(ConfigError, match=r"sources\.ffhq\.root = '.*nope': expected an existing directory"):
        scan(params)


def test_empty_source_warns_with_the_param(world, tmp_path, caplog):
    out, _ = world
    (tmp_path / "HR").mkdir()
    params = load_params(PARAMS, curate_overrides(out, **{"sources.edface.root": str(tmp_path)}))
    df = scan(params)
    assert "edface" not in set(df.source)
    assert any("sources.edface.root" in r.getMessage() for r in caplog.records)


def test_near_duplicates_across_sources_are_dropped_and_counted(params):
    m = pd.DataFrame([{"key": k, "source": s, "path": f"{k}.jpg", "member": "", "width": 100, "height": 100, "error": ""}
                      for k, s in (("a-1", "a"), ("a-2", "a"), ("b-1", "b"), ("c-1", "c"))])
    sha = pd.Series({k: k for k in m.key})  # all different bytes
    dhash = pd.Series({"a-1": 7, "a-2": 7, "b-1": 7, "c-1": 9})
    kept, rejects, pairs = apply_filters(m, params.curate, sha, dhash)
    assert sorted(kept.key) == ["a-1", "a-2", "c-1"]  # same-source look-alikes are kept
    assert rejects[["key", "reason", "duplicate_of"]].values.tolist() == [["b-1", "near_duplicate", "a-1"]]
    assert pairs == {"a~b": 1}


def test_min_side_filter(params):
    from dataclasses import replace

    m = _manifest([(100, 100), (60, 80), (64, 64)])
    kept, rejects, _ = apply_filters(m, replace(params.curate, min_side=64), pd.Series({k: k for k in m.key}))
    assert sorted(kept.key) == ["s-0", "s-2"] and rejects.reason.tolist() == ["too_small"]


def test_manifest_ignores_modification_times_and_sees_changed_images(tmp_path):
    """A checkout or copy (new mtimes, same bytes) must not re-run curation; a re-encoded image must."""
    root = tmp_path / "mine"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.jpg", "b.jpg"):
        Image.fromarray(rng.integers(0, 256, (96, 80, 3), dtype=np.uint8)).save(root / name, quality=90)
    off = {f"sources.{n}": {"enabled": False, "root": "x", "max_images": 0} for n in NAMES}
    params = load_params(PARAMS, {**off, "sources.folder": {"enabled": True, "root": str(root), "max_images": 0}})
    before = scan(params)
    for path in root.iterdir():
        os.utime(path, (1_800_000_000, 1_800_000_000))
    assert scan(params).equals(before)
    Image.open(root / "b.jpg").save(root / "b.jpg", quality=70)
    after = scan(params)
    changed = after.key[after.sig != before.sig].tolist()
    assert changed == before.key[before.path.str.endswith("b.jpg")].tolist()


@pytest.mark.slow
def test_curation_on_a_ray_cluster_runs_on_the_other_nodes_and_gives_the_local_bytes(world, curated, tmp_path):
    """`ray.address` set: the driver joins a 3-node cluster (Ray's own test cluster) whose head,
    where the driver runs, has no CPU, so every task has to run on the two worker nodes; the
    shards are byte for byte those of the local run. (Which worker node takes which of the tiny
    world's short tasks is Ray's choice: it reuses a leased worker for quick tasks.)"""
    import ray
    from ray.cluster_utils import Cluster

    out, _ = world
    _, base = curated
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        workers = {cluster.add_node(num_cpus=1).node_id for _ in range(2)}
        cluster.wait_for_nodes()
        params = load_params(PARAMS, curate_overrides(out, **{"ray.address": cluster.address}))
        result = curate(params, base / "manifest.parquet", tmp_path / "face9m", tmp_path / "c.json", tmp_path / "s.png")
    finally:
        ray.shutdown()
        cluster.shutdown()
    ran = result["tasks_per_node"]
    assert set(ran) <= workers and sum(ran.values()) > result["shards"], ran  # shard + fingerprint tasks, none on the head
    assert _digests(tmp_path / "face9m" / "shards") == _digests(base / "face9m" / "shards")
    for name in ("sizes.json", "rejects.parquet", "plan.parquet"):
        assert (tmp_path / "face9m" / name).read_bytes() == (base / "face9m" / name).read_bytes()


def test_only_images_sharing_size_and_signature_are_hashed_and_the_duplicates_are_the_same(world, curated):
    """Hashing just the (size, scan signature) collisions finds exactly the duplicates that hashing
    every image finds."""
    from pipeline.curate.plan import apply_filters
    from pipeline.curate.shards import RawReader

    params, base = curated
    manifest = pd.read_parquet(base / "manifest.parquet").fillna({"member": "", "identity": "", "error": ""})
    readable = manifest[manifest.error == ""]
    reader = RawReader()
    every = pd.Series({r.key: hashlib.sha256(reader.read(r.path, r.member)).hexdigest()
                       for r in readable.itertuples()}, dtype=object)
    reader.close()
    _, want, _ = apply_filters(manifest, params.curate, every)
    got = pd.read_parquet(base / "face9m" / "rejects.parquet")
    dup = want[want.reason == "duplicate"]
    assert len(dup) > 0  # the world's duplicate flaws
    assert dup.set_index("key").duplicate_of.to_dict() == got[got.reason == "duplicate"].set_index("key").duplicate_of.to_dict()
    suspects = readable[["size", "sig"]].duplicated(keep=False).sum()
    assert len(dup) <= suspects < len(readable) / 4  # so most images are not hashed at all


def _square(x: int) -> int:
    return x * x


def test_tasks_are_submitted_with_a_bounded_number_in_flight():
    """However many tasks, at most ``in_flight`` are unfinished at once, and results keep their order."""
    import ray

    from pipeline.curate.cluster import run_tasks

    seen: list[int] = []

    class Watched:  # ray, with its wait() recording how many tasks are pending
        def __getattr__(self, name):
            return getattr(ray, name)

        @staticmethod
        def wait(refs, **kwargs):
            seen.append(len(refs))
            return ray.wait(refs, **kwargs)

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        results = run_tasks(Watched(), _square, [(i,) for i in range(40)], "test", "task", [1] * 40, in_flight=3)
    finally:
        ray.shutdown()
    assert results == [i * i for i in range(40)]
    assert len(seen) == 40 and max(seen) == 3


def _raise_output_error(path: str):
    from pipeline.config import OutputError

    raise OutputError(f"{path}: cannot write (No space left on device)")


def test_a_users_error_in_a_task_reaches_the_driver_as_itself_not_a_remote_traceback():
    import ray

    from pipeline.config import OutputError
    from pipeline.curate.cluster import run_tasks

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        with pytest.raises(OutputError) as err:
            run_tasks(ray, _raise_output_error, [("out/shards",)], "test", "task", [1])
    finally:
        ray.shutdown()
    assert type(err.value) is OutputError and str(err.value) == "out/shards: cannot write (No space left on device)"


@pytest.mark.slow
def test_a_full_disk_removes_the_partial_shard_and_says_so(curated, tmp_path):
    """The shard's temporary file is /dev/full, where every write fails with ENOSPC."""
    from pipeline.config import OutputError
    from pipeline.curate.shards import ShardSpec, write_shard

    params, base = curated
    rows = pd.read_parquet(base / "manifest.parquet").fillna({"member": "", "identity": "", "error": ""})
    rows = rows[rows.error == ""].head(8)
    spec = ShardSpec(3, "fp", str(tmp_path / "shards"), str(tmp_path / "stats"), 64, 90, rows=tuple(rows.to_dict("records")))
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "face9m-000003.tar.tmp").symlink_to("/dev/full")
    with pytest.raises(OutputError, match=r"shards: cannot write face9m-000003 \(No space left on device\); shards "
                                          r"already finished are kept"):
        write_shard(spec)
    assert list((tmp_path / "shards").iterdir()) == [] and list((tmp_path / "stats").iterdir()) == []


@pytest.mark.slow
def test_a_source_file_gone_since_the_scan_is_an_unreadable_reject(world, curated, tmp_path, caplog):
    import shutil

    out, _ = world
    params, base = curated
    manifest = pd.read_parquet(base / "manifest.parquet")
    kept = set(read_keys(base / "face9m" / "shards"))
    # a plain file of a byte size no other file has: the original of no duplicate (if it were, its
    # duplicate would rightly be kept instead)
    alone = ~manifest["size"].duplicated(keep=False)
    row = manifest[manifest.key.isin(kept) & manifest.member.fillna("").eq("") & alone].index[0]
    moved = tmp_path / "gone.jpg"
    shutil.copy(manifest.at[row, "path"], moved)
    manifest.at[row, "path"] = str(moved)
    manifest.to_parquet(tmp_path / "manifest.parquet", index=False)
    moved.unlink()  # deleted after the scan
    curate(params, tmp_path / "manifest.parquet", tmp_path / "face9m", tmp_path / "c.json", tmp_path / "s.png")
    rejects = pd.read_parquet(tmp_path / "face9m" / "rejects.parquet").set_index("key")
    key = manifest.at[row, "key"]
    assert rejects.at[key, "reason"] == "unreadable" and "No such file" in rejects.at[key, "detail"]
    assert set(read_keys(tmp_path / "face9m" / "shards")) == kept - {key}
    assert json.loads((tmp_path / "c.json").read_text())["total"]["dropped"] == len(rejects)
    assert "1 image(s) listed by the scan could not be read any more" in caplog.text


@pytest.mark.slow
def test_a_worker_killed_mid_shard_is_retried_to_the_same_bytes(world, curated, tmp_path, monkeypatch):
    from pipeline.curate.shards import KILL_WORKER_ONCE

    out, _ = world
    _, base = curated
    marker = tmp_path / "killed"
    monkeypatch.setenv(KILL_WORKER_ONCE, str(marker))  # inherited by the Ray workers curate starts
    params = load_params(PARAMS, curate_overrides(out, **{"ray.num_cpus": 2}))
    curate(params, base / "manifest.parquet", tmp_path / "face9m", tmp_path / "c.json", tmp_path / "s.png")
    assert marker.is_file()  # a worker did die half-way through shard 0
    assert _digests(tmp_path / "face9m" / "shards") == _digests(base / "face9m" / "shards")
    assert _digests(tmp_path / "face9m" / "stats") == _digests(base / "face9m" / "stats")


def test_take_reads_rows_in_the_order_asked_across_row_groups(tmp_path):
    from pipeline.curate.manifest import take
    from pipeline.curate.scan import write_manifest

    df = pd.DataFrame({"path": [f"p{i}" for i in range(20)], "member": [None if i % 2 else f"m{i}" for i in range(20)]})
    write_manifest(df, tmp_path / "m.parquet", row_group=3)
    rows = np.array([19, 0, 7, 7, 3, 12])
    got = take(tmp_path / "m.parquet", rows, ["path", "member"])
    assert got.path.tolist() == [f"p{i}" for i in rows]
    assert got.member.tolist() == ["", "m0", "", "", "", "m12"]  # NULL members read as ""
    assert take(tmp_path / "m.parquet", np.array([], dtype=np.int64), ["path"]).empty
    with pytest.raises(IndexError, match="rows outside 0..19"):
        take(tmp_path / "m.parquet", np.array([20]), ["path"])


@pytest.mark.slow
def test_same_bytes_from_many_row_groups_and_a_plan_written_in_passes(world, curated, tmp_path, monkeypatch):
    """Tasks read their rows from row groups, and the driver writes the plan a few shards at a time:
    neither changes a byte of the output."""
    from pipeline.curate import plan as planning
    from pipeline.curate.scan import write_manifest

    out, _ = world
    params, base = curated
    write_manifest(pd.read_parquet(base / "manifest.parquet"), tmp_path / "manifest.parquet", row_group=7)
    monkeypatch.setattr(planning, "PLAN_ROWS_IN_MEMORY", params.curate.shard_size + 1)  # one shard a pass
    curate(params, tmp_path / "manifest.parquet", tmp_path / "face9m", tmp_path / "c.json", tmp_path / "s.png")
    assert _digests(tmp_path / "face9m" / "shards") == _digests(base / "face9m" / "shards")
    for name in ("sizes.json", "rejects.parquet", "plan.parquet"):
        assert (tmp_path / "face9m" / name).read_bytes() == (base / "face9m" / name).read_bytes()


def test_a_verified_shard_is_trusted_while_unchanged_and_rehashed_otherwise(curated, tmp_path, monkeypatch):
    from dataclasses import replace

    from pipeline.curate import shards

    _, base = curated
    rows = pd.read_parquet(base / "manifest.parquet").fillna({"member": "", "identity": "", "error": ""})
    rows = rows[rows.error == ""].head(4)
    spec = shards.ShardSpec(1, "fp", str(tmp_path / "shards"), str(tmp_path / "stats"), 32, 90,
                            rows=tuple(rows.to_dict("records")))
    assert shards.write_shard(spec)["skipped"] is False
    hashed = []
    real = shards.file_sha256
    monkeypatch.setattr(shards, "file_sha256", lambda p: hashed.append(p) or real(p))
    assert shards.write_shard(spec)["skipped"] is True and hashed == []  # size + mtime as recorded: not read
    tar = tmp_path / "shards" / "face9m-000001.tar"
    os.utime(tar, ns=(tar.stat().st_atime_ns, tar.stat().st_mtime_ns + 10**9))  # touched (a copy, a checkout)
    assert shards.write_shard(spec)["skipped"] is True and hashed == [tar]  # re-hashed once, still intact
    assert shards.write_shard(spec)["skipped"] is True and hashed == [tar]  # and trusted again
    assert shards.write_shard(replace(spec, rehash=True))["skipped"] is True and len(hashed) == 2
    with tar.open("r+b") as fh:  # damaged, and its mtime moves with the write
        fh.seek(600)
        fh.write(b"\0" * 16)
    assert shards.write_shard(spec)["skipped"] is False  # rewritten
    assert shards.write_shard(replace(spec, fingerprint="other"))["skipped"] is False  # another plan's shard


@pytest.mark.slow
def test_the_parallel_scan_writes_the_same_manifest_bytes(world, curated, tmp_path):
    """Header reads in 1 or 3 processes (the fixture's scan used one per CPU): the same manifest, caps too."""
    from pipeline.curate.scan import write_manifest

    out, _ = world
    _, base = curated
    cap = {"sources.laion_face": {"enabled": True, "root": str(source_root(out, "laion_face")), "max_images": 5},
           "sources.celeba": {"enabled": True, "root": str(source_root(out, "celeba")), "max_images": 7}}
    frames = {}
    for workers in (1, 3):
        frames[workers] = scan(load_params(PARAMS, curate_overrides(out, **{"sources.scan_workers": workers})))
        write_manifest(frames[workers], tmp_path / f"{workers}.parquet")
        assert (tmp_path / f"{workers}.parquet").read_bytes() == (base / "manifest.parquet").read_bytes()
        capped = scan(load_params(PARAMS, curate_overrides(out, **{"sources.scan_workers": workers}, **cap)))
        full = frames[workers]
        for source, n in (("laion_face", 5), ("celeba", 7)):  # the first n, in order
            assert capped.key[capped.source == source].tolist() == full.key[full.source == source].tolist()[:n]


def test_the_walk_skips_folders_and_dangling_links_named_like_images(tmp_path):
    from pipeline.curate.sources import read_source

    root = tmp_path / "mine"
    (root / "album.jpg").mkdir(parents=True)  # a folder, not an image
    (root / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    Image.new("RGB", (40, 48), "white").save(root / "real.jpg")
    assert [r.path for r in read_source("folder", root)] == [str(root / "real.jpg")]


def test_region_maps_travel_with_their_images_through_curation(curated):
    """Every curated sample carries its own image's LaPa map, cut and resized as the image was (nearest
    neighbour); a map given to another key, or resized by interpolation, fails here."""
    params, base = curated
    world = Path(params.synth.out_dir)
    size = params.curate.image_size
    truth = pd.read_csv(world / "truth" / "sources.csv", keep_default_na=False)
    items = {(name, it.index): it for name in NAMES for it in synth_sources.plan_items(params.synth, name)}
    checked = 0
    for sample in wds.WebDataset([str(t) for t in sorted((base / "face9m" / "shards").glob("*.tar"))], shardshuffle=False):
        assert "regions.png" in sample, sample["__key__"]
        meta = json.loads(sample["json"])
        labels = cv2.imdecode(np.frombuffer(sample["regions.png"], np.uint8), cv2.IMREAD_UNCHANGED)
        assert labels.shape == (size, size) and labels.max() <= 10
        if meta["source"] not in ("celeba", "umdfaces") or meta["member"]:
            continue
        rel = Path(meta["path"]).relative_to(source_root(world, meta["source"])).as_posix()
        rows = truth[truth.source == meta["source"]].reset_index(drop=True)  # one row per item, in item order
        index = int(np.flatnonzero(rows.path == rel)[0])
        row, item = rows.iloc[index], items[(meta["source"], index)]
        if row.flaw:  # duplicates show another file's face
            continue
        full = synth_sources.region_map(params.synth, meta["source"], item)
        if meta["source"] == "umdfaces":  # curated as the face box the ultraface CSV gives (the scene's box)
            x, y, w, h = synth_sources.make_image(params.synth, "umdfaces", item)[1]
            full = full[max(0, round(y)):round(y + h), max(0, round(x)):round(x + w)]
        expected = cv2.resize(full, (size, size), interpolation=cv2.INTER_NEAREST)
        assert (labels == expected).mean() == 1.0, (meta["path"], (labels == expected).mean())
        assert len(np.unique(labels)) >= 6  # a face: skin, brows, eyes, nose, lips at least
        checked += 1
    assert checked >= 20
    counts = json.loads((base / "face9m" / "regions.json").read_text())
    assert all(n["regions"] == n["samples"] > 0 for n in counts.values()), counts
