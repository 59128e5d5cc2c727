"""The real download path (urllib → temporary file → md5 → atomic rename) against a server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from pathlib import Path

import pytest
import torch

from fashion_lab import DataError, FashionMNISTDataModule, K49DataModule, MNISTDataModule, sources
from fashion_lab.synthetic import IDX_FILES, write_idx_set, write_k49
from tests.helpers.loopback import serve


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "BACKOFF_S", 0.01)
    monkeypatch.setattr(sources, "TIMEOUT_S", 0.5)


@pytest.fixture
def k49_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Synthetic K49 npz served on loopback, with K49DataModule pointed at it and expecting their md5s."""
    paths = write_k49(tmp_path / "upstream", n_train=98, n_test=49)
    with serve() as server:
        server.files = {f"/k49/{p.name}": p.read_bytes() for p in paths}
        md5s = tuple((p.name, hashlib.md5(p.read_bytes()).hexdigest()) for p in paths)
        monkeypatch.setattr(K49DataModule, "mirrors", (server.url + "k49/",))
        monkeypatch.setattr(K49DataModule, "resources", md5s)
        yield server


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and p.suffix != ".npz")


def test_k49_download_end_to_end(tmp_path: Path, k49_server) -> None:
    dm = K49DataModule(data_dir=tmp_path / "data", batch_size=7)
    dm.prepare_data()
    raw = tmp_path / "data" / "K49" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(name for name, _ in K49DataModule.resources)
    dm.setup("test")
    assert len(dm.test_set) == 49 and dm.test_set.labels.tolist() == list(range(49))
    dm.prepare_data()  # everything present: no second download
    assert len(k49_server.requests) == 4


@pytest.mark.parametrize("fault", ["truncate", "500", "stall"])
def test_transient_fault_is_retried(tmp_path: Path, k49_server, fault: str) -> None:
    k49_server.faults["/k49/k49-test-imgs.npz"] = [fault]
    K49DataModule(data_dir=tmp_path / "data").prepare_data()
    assert k49_server.requests.count("/k49/k49-test-imgs.npz") == 2
    assert leftovers(tmp_path / "data") == []


@pytest.mark.parametrize(
    ("fault", "message"),
    [("truncate", "connection closed after"), ("500", "HTTP Error 500"), ("stall", "timed out")],
)
def test_persistent_fault_fails_clearly_and_leaves_nothing(tmp_path: Path, k49_server, fault, message) -> None:
    k49_server.faults["/k49/k49-train-labels.npz"] = [fault] * 3
    with pytest.raises(DataError, match=rf"Could not download k49-train-labels.npz after 3 tries .*{message}"):
        K49DataModule(data_dir=tmp_path / "data").prepare_data()
    raw = tmp_path / "data" / "K49" / "raw"
    assert "k49-train-labels.npz" not in [p.name for p in raw.iterdir()]
    assert leftovers(tmp_path / "data") == []
    K49DataModule(data_dir=tmp_path / "data").prepare_data()  # a later good run succeeds
    assert (raw / "k49-train-labels.npz").is_file()


def test_wrong_md5_is_never_kept(tmp_path: Path, k49_server, monkeypatch: pytest.MonkeyPatch) -> None:
    name, _ = K49DataModule.resources[0]
    bad = ((name, "0" * 32), *K49DataModule.resources[1:])
    monkeypatch.setattr(K49DataModule, "resources", bad)
    with pytest.raises(DataError, match=r"k49-train-imgs.npz .*md5 [0-9a-f]{32} != expected 0{32}"):
        K49DataModule(data_dir=tmp_path / "data").prepare_data()
    assert list((tmp_path / "data" / "K49" / "raw").iterdir()) == []


def test_download_disabled_names_the_fix(tmp_path: Path, k49_server) -> None:
    with pytest.raises(DataError, match=r"K49 file k49-train-imgs.npz not found .*--data.download true"):
        K49DataModule(data_dir=tmp_path / "data", download=False).prepare_data()
    assert k49_server.requests == []


def test_idx_download_uses_torchvision_names_and_md5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = write_idx_set(tmp_path / "upstream", n_train=30, n_test=10)
    with serve() as server:
        server.files = {f"/mnist/{p.name}": p.read_bytes() for p in paths}
        monkeypatch.setattr(MNISTDataModule, "mirrors", ("http://127.0.0.1:9/dead/", server.url + "mnist/"))
        md5s = tuple((p.name, hashlib.md5(p.read_bytes()).hexdigest()) for p in paths)
        monkeypatch.setattr(MNISTDataModule, "resources", md5s)
        dm = MNISTDataModule(data_dir=tmp_path / "data", batch_size=8)  # 24 training images: at least a batch
        dm.prepare_data()  # the first mirror refuses connections: the second one serves
        dm.setup("fit")
    raw = tmp_path / "data" / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(name + ".gz" for name in IDX_FILES)
    assert len(dm.train_set) == 24


def _prepare(data_dir: str, url: str, resources: tuple) -> None:
    K49DataModule.mirrors, K49DataModule.resources = (url,), resources
    K49DataModule(data_dir=data_dir).prepare_data()


def test_two_processes_preparing_one_empty_folder(tmp_path: Path, k49_server) -> None:
    ctx = multiprocessing.get_context("spawn")
    args = (str(tmp_path / "data"), K49DataModule.mirrors[0], K49DataModule.resources)
    procs = [ctx.Process(target=_prepare, args=args) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert leftovers(tmp_path / "data") == []
    dm = K49DataModule(data_dir=tmp_path / "data", download=False)
    dm.setup("fit")
    assert len(dm.train_set) + len(dm.val_set) == 98
    assert torch.equal(dm.train_set.labels[:49], torch.arange(49))


def test_downloaded_and_written_files_get_the_usual_mode(tmp_path: Path, k49_server) -> None:
    """atomic_write's files get open()'s usual mode, 0666 & ~umask (not mkstemp's private 0600)."""
    K49DataModule(data_dir=tmp_path).prepare_data()
    umask = os.umask(0o022)  # setting the umask is the only way to read it; put back at once
    os.umask(umask)
    expected = 0o666 & ~umask
    assert {p.stat().st_mode & 0o777 for p in tmp_path.rglob("*.npz")} == {expected}
    with sources.atomic_write(tmp_path / "out.csv") as tmp:
        tmp.write_text("a,b\n")
    assert (tmp_path / "out.csv").stat().st_mode & 0o777 == expected


def test_fashion_download_error_names_the_offline_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without internet and without Debian's copy: the fix names the package and the folder for the files."""
    with serve() as server:  # serves nothing: every file is a 404, as from a mirror that cannot be reached
        monkeypatch.setattr(FashionMNISTDataModule, "mirrors", (server.url,))
        monkeypatch.setattr(FashionMNISTDataModule, "local_copies", ())
        with pytest.raises(DataError) as error:
            FashionMNISTDataModule(data_dir=tmp_path / "data").prepare_data()
    message = str(error.value)
    assert message.startswith("Could not download train-images-idx3-ubyte.gz after 3 tries per mirror (")
    assert "HTTP Error 404" in message
    assert "without internet, install Debian's copy (apt-get install dataset-fashion-mnist" in message
    assert "found in /usr/share/datasets/fashion-mnist/" in message
    assert message.endswith(f"or place the file yourself in {tmp_path / 'data' / 'FashionMNIST' / 'raw'}/.")
