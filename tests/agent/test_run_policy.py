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
    ],
)
def test_malformed_policies_are_refused_by_field(raw: bytes, message: str) -> None:
    with pytest.raises(RunPolicyError, match=message):
        RunPolicy.parse(raw, WHERE)
