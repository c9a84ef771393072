"""What the host hands the enclave, and the records it keeps, refuse malformed input by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealpod.boundary.request import BootRequest
from sealpod.errors import SealpodError, UsageError
from sealpod.runtime import containers


def test_a_boot_request_round_trips_and_refuses_unknown_or_missing_fields() -> None:
    request = BootRequest(image="r/a:v1", kbs_url="http://127.0.0.1:1", command=["sh"], memory=1 << 20)
    assert BootRequest.from_json(request.to_json()) == request
    with pytest.raises(SealpodError, match=r"malformed boot request: .*unexpected keyword argument 'keys'"):
        BootRequest.from_json('{"image": "r/a:v1", "kbs_url": "u", "keys": "secret"}')
    with pytest.raises(SealpodError, match=r"malformed boot request: .*missing .* 'kbs_url'"):
        BootRequest.from_json('{"image": "r/a:v1"}')
    with pytest.raises(SealpodError, match="malformed boot request"):
        BootRequest.from_json("{not json")
    # a command as one string would be split into characters; a limit as text would never apply
    with pytest.raises(SealpodError, match="command has the wrong type"):
        BootRequest.from_json('{"image": "r/a:v1", "kbs_url": "u", "command": "cat /app/secret"}')
    with pytest.raises(SealpodError, match="memory has the wrong type"):
        BootRequest.from_json('{"image": "r/a:v1", "kbs_url": "u", "memory": "64m"}')
    with pytest.raises(SealpodError, match="allow_sim has the wrong type"):
        BootRequest.from_json('{"image": "r/a:v1", "kbs_url": "u", "allow_sim": 1}')
    # what sealpod-runtime passes from a pod spec
    pod = BootRequest(image="r/a:v1", kbs_url="u", argv=["/bin/sh"], host_env=["A=1"], netns="/run/netns/x", start_fd=3)
    assert BootRequest.from_json(pod.to_json()) == pod
    for field, value in (("argv", '"/bin/sh -c x"'), ("host_env", '{"A": "1"}'), ("netns", "1"), ("start_fd", '"3"')):
        with pytest.raises(SealpodError, match=f"{field} has the wrong type"):
            BootRequest.from_json(f'{{"image": "r/a:v1", "kbs_url": "u", "{field}": {value}}}')


def test_container_names_must_be_safe_and_unique(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEALPOD_STATE_DIR", str(tmp_path))
    request = BootRequest(image="r/a:v1", kbs_url="http://127.0.0.1:1")
    for bad in ("../escape", "a/b", "", "-x", "x" * 64):
        with pytest.raises(UsageError, match="is not valid"):
            containers.create(request, bad or " ")
    made = containers.create(request, "web")
    assert made.request["name"] == "web"
    assert containers.find("web").id == made.id
    assert containers.find(made.id[:6]).name == "web"
    with pytest.raises(UsageError, match="a container named 'web' exists"):
        containers.create(request, "web")
    with pytest.raises(UsageError, match="no container named 'nope'"):
        containers.find("nope")
    assert made.status() == "dead"  # recorded but never started
    containers.remove(made)
    assert containers.all_containers() == []


def test_an_unreadable_record_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEALPOD_STATE_DIR", str(tmp_path))
    broken = tmp_path / "containers" / "abc"
    broken.mkdir(parents=True)
    (broken / "state.json").write_text("{")
    with pytest.raises(SealpodError, match=f"container record {broken} is unreadable"):
        containers.all_containers()
