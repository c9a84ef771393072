"""The tenant's run policy: host-supplied commands and environment are refused unless the tenant allows them."""

from __future__ import annotations

import pytest

from sealpod.agent.run_policy import RunPolicy, RunPolicyError

WHERE = "kbs:///default/run-policy/test"


def test_the_default_allows_only_the_image_s_own_command_and_env() -> None:
    policy = RunPolicy()
    policy.check([], [], WHERE)
    with pytest.raises(RunPolicyError, match="replace the image's command"):
        policy.check(["sh"], [], WHERE)
    with pytest.raises(RunPolicyError, match="asked to set A in the environment"):
        policy.check([], ["A=1"], WHERE)


def test_allowed_names_and_everything() -> None:
    listed = RunPolicy.parse(b'{"allow_command": true, "allow_env": ["PORT"]}', WHERE)
    listed.check(["sh"], ["PORT=8080"], WHERE)
    with pytest.raises(RunPolicyError, match="asked to set LD_PRELOAD in the environment"):
        listed.check([], ["PORT=1", "LD_PRELOAD=/x.so"], WHERE)
    RunPolicy.parse(b'{"allow_env": true}', WHERE).check([], ["ANY=1"], WHERE)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[]", "must be a JSON object"),
        (b"{", "is not valid JSON"),
        (b'{"allow_command": "yes"}', "allow_command must be true or false"),
        (b'{"allow_env": [1]}', "allow_env must be true, false or a list of names"),
        (b'{"allow_cmd": true}', "unknown fields: allow_cmd"),
        (b'{"allow_volumes": ["data"]}', "allow_volumes must be true, false or a list of absolute paths"),
        (b'{"allow_volumes": "/data"}', "allow_volumes must be true, false or a list of absolute paths"),
    ],
)
def test_malformed_policies_are_refused_by_field(raw: bytes, message: str) -> None:
    with pytest.raises(RunPolicyError, match=message):
        RunPolicy.parse(raw, WHERE)


def test_a_pods_argv_is_a_change_only_when_it_differs_from_the_images() -> None:
    image_argv = ["/bin/sh", "-c", "serve"]
    assert RunPolicy().pod_argv(image_argv, image_argv, "kbs:///p") is None
    assert RunPolicy().pod_argv([], image_argv, "kbs:///p") is None
    with pytest.raises(RunPolicyError, match="replaces the image's command"):
        RunPolicy().pod_argv(["/bin/sh", "-c", "cat /app/secret"], image_argv, "kbs:///p")
    assert RunPolicy(allow_command=True).pod_argv(["/bin/true"], image_argv, "kbs:///p") == ["/bin/true"]


def test_a_pods_variables_pass_only_as_the_policy_allows_and_the_rest_are_dropped() -> None:
    image_env = ["PATH=/bin", "MODE=prod"]
    pod_env = ["PATH=/bin", "MODE=prod", "KUBERNETES_SERVICE_HOST=10.0.0.1", "PORT=8080", "LD_PRELOAD=/evil.so"]
    assert RunPolicy().pod_env(pod_env, image_env) == ([], ["KUBERNETES_SERVICE_HOST", "PORT", "LD_PRELOAD"])
    listed = RunPolicy(allow_env=frozenset({"PORT"}))
    assert listed.pod_env(pod_env, image_env) == (["PORT=8080"], ["KUBERNETES_SERVICE_HOST", "LD_PRELOAD"])
    # a value the image does not have is a change even for a name the image sets
    assert RunPolicy().pod_env(["MODE=debug"], image_env) == ([], ["MODE"])


def test_volumes_by_default_only_where_the_image_has_nothing_or_at_the_node_s_files() -> None:
    policy = RunPolicy()
    policy.check_volume("/data", False, WHERE)
    policy.check_volume("/etc/resolv.conf", True, WHERE)
    with pytest.raises(RunPolicyError, match="a volume at /usr/bin: it would cover what the image holds there"):
        policy.check_volume("/usr/bin", True, WHERE)


def test_volumes_the_tenant_lists_nowhere_or_anywhere() -> None:
    listed = RunPolicy.parse(b'{"allow_volumes": ["/srv/"]}', WHERE)
    listed.check_volume("/srv", True, WHERE)
    listed.check_volume("/srv/www", True, WHERE)
    with pytest.raises(RunPolicyError, match="does not list it in allow_volumes"):
        listed.check_volume("/srvx", False, WHERE)
    with pytest.raises(RunPolicyError, match="allows no volumes"):
        RunPolicy.parse(b'{"allow_volumes": false}', WHERE).check_volume("/data", False, WHERE)
    RunPolicy.parse(b'{"allow_volumes": true}', WHERE).check_volume("/usr/bin", True, WHERE)
