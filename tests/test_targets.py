"""Targets from ``--host`` values: addresses, plugin schemes and inventory names."""

from __future__ import annotations

import re
import textwrap

import pytest

from runbook.hosts.inventory import load_inventory
from runbook.hosts.targets import parse_targets
from runbook.outcomes import UsageError
from runbook.records import Target

PARSED = [
    # value(s), expected (name, spec) pairs
    (["local"], [("local", "local")]),
    (["web1"], [("web1", "ssh://web1")]),
    (["web1.example.com"], [("web1.example.com", "ssh://web1.example.com")]),
    (["deploy@web1:2222"], [("web1:2222", "ssh://deploy@web1:2222")]),
    (["10.0.0.1"], [("10.0.0.1", "ssh://10.0.0.1")]),
    (["root@10.0.0.1:22"], [("10.0.0.1:22", "ssh://root@10.0.0.1:22")]),
    (["2001:db8::1"], [("2001:db8::1", "ssh://[2001:db8::1]")]),
    (["[2001:db8::1]"], [("2001:db8::1", "ssh://[2001:db8::1]")]),
    (["ops@[2001:db8::1]:2200"], [("[2001:db8::1]:2200", "ssh://ops@[2001:db8::1]:2200")]),
    (["fe80::1%eth0"], [("fe80::1%eth0", "ssh://[fe80::1%eth0]")]),
    (["ssh://web1"], [("web1", "ssh://web1")]),
    (["ssh://deploy@web1:2222"], [("web1:2222", "ssh://deploy@web1:2222")]),
    (["ssh://[::1]:22"], [("[::1]:22", "ssh://[::1]:22")]),
    (["docker://api-1"], [("docker://api-1", "docker://api-1")]),
    (["kubectl://prod/api-7d9f"], [("kubectl://prod/api-7d9f", "kubectl://prod/api-7d9f")]),
    (
        ["local, web1 ,,", " db1"],
        [("local", "local"), ("web1", "ssh://web1"), ("db1", "ssh://db1")],
    ),
    (["web1,web1", "ssh://web1", "local,local"], [("web1", "ssh://web1"), ("local", "local")]),
    (["a@h", "b@h"], [("h", "ssh://a@h"), ("h", "ssh://b@h")]),
    ([], []),
    ([" , "], []),
]


@pytest.mark.parametrize(("values", "expected"), PARSED)
def test_parse(values, expected):
    assert parse_targets(values) == [Target(name, spec) for name, spec in expected]


INVALID = [
    ("web 1", "contains whitespace"),
    ("web1;reboot", "contains the character ';'"),
    ("$(reboot)", "contains the character '$'"),
    ("web1|cat", "contains the character '|'"),
    ("`id`", "contains the character '`'"),
    ("docker://a b", "contains whitespace"),
    ("web1:", "bad port '' (expected 1-65535)"),
    ("web1:0", "bad port '0' (expected 1-65535)"),
    ("web1:65536", "bad port '65536' (expected 1-65535)"),
    ("web1:ssh", "bad port 'ssh' (expected 1-65535)"),
    ("ssh://web1:99999", "bad port '99999' (expected 1-65535)"),
    (":22", "empty host"),
    ("deploy@", "empty host"),
    ("ssh://", "nothing after ssh://"),
    ("docker://", "nothing after docker://"),
    ("@web1", "empty user before '@'"),
    ("a@b@web1", "bad user 'a@b'"),
    ("-web", "bad host name '-web'"),
    ("web..example", "bad host name 'web..example'"),
    ("ssh://web1/path", "bad host name 'web1/path'"),
    ("[2001:db8::1", "expected an IPv6 address in brackets"),
    ("[web1]:22", "expected an IPv6 address in brackets"),
    ("[::1]x", "unexpected 'x' after the address"),
    ("ssh://2001:db8::1", "put an IPv6 address in brackets"),
    ("fe80::zz", "put an IPv6 address in brackets"),
    ("1ssh://web1", "bad scheme '1ssh'"),
]


@pytest.mark.parametrize(("value", "problem"), INVALID)
def test_invalid(value, problem):
    with pytest.raises(UsageError) as info:
        parse_targets([f"local,{value}"])
    message = str(info.value)
    assert message.startswith(f"invalid target {value!r}: {problem}"), message
    assert "\n" not in message


@pytest.fixture
def inventory(tmp_path):
    path = tmp_path / "hosts.ini"
    path.write_text(
        textwrap.dedent(
            """
            bastion ansible_host=203.0.113.9
            [web]
            web1 ansible_host=10.0.0.1 ansible_user=deploy
            web2 ansible_host=10.0.0.2 ansible_port=2222
            [db]
            db1 ansible_host=2001:db8::5
            [prod:children]
            web
            db
            [tools]
            me ansible_connection=local
            [empty]
            """
        ),
        encoding="utf-8",
    )
    return load_inventory(path)


WEB1 = ("web1", "ssh://deploy@10.0.0.1")
WEB2 = ("web2", "ssh://10.0.0.2:2222")
DB1 = ("db1", "ssh://[2001:db8::5]")
INVENTORY_PARSED = [
    (["web1"], [WEB1]),
    (["web"], [WEB1, WEB2]),
    (["prod"], [WEB1, WEB2, DB1]),
    # overlapping names run each host once, in the order first given
    (["web2,prod", "web1"], [WEB2, WEB1, DB1]),
    # same spec from an address and an inventory name: the first one wins
    (["10.0.0.2:2222", "web2"], [("10.0.0.2:2222", "ssh://10.0.0.2:2222")]),
    (["ungrouped,tools"], [("bastion", "ssh://203.0.113.9"), ("me", "local")]),
    (["tools,local"], [("me", "local")]),
    # anything that is not a plain word is still an address
    (["10.9.9.9"], [("10.9.9.9", "ssh://10.9.9.9")]),
    (["other.example.com"], [("other.example.com", "ssh://other.example.com")]),
    (["ops@web9"], [("web9", "ssh://ops@web9")]),
    (["web9:22"], [("web9:22", "ssh://web9:22")]),
    (["docker://c1"], [("docker://c1", "docker://c1")]),
]


@pytest.mark.parametrize(("values", "expected"), INVENTORY_PARSED)
def test_parse_with_inventory(inventory, values, expected):
    assert parse_targets(values, inventory) == [Target(name, spec) for name, spec in expected]


def test_all_expands_to_every_host(inventory):
    names = [target.name for target in parse_targets(["all"], inventory)]
    assert names == ["bastion", "web1", "web2", "db1", "me"]


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ("webx", "; did you mean 'web'?"),
        ("wbe1", "; did you mean 'web1'?"),
        ("prd", "; did you mean 'prod'?"),
        ("bastoin", "; did you mean 'bastion'?"),
        ("zzz", ""),
    ],
)
def test_unknown_name_in_inventory(inventory, value, hint):
    with pytest.raises(UsageError) as info:
        parse_targets([f"web1,{value}"], inventory)
    expected = f"unknown host or group {value!r} in inventory {inventory.path}{hint}"
    assert str(info.value) == expected


def test_empty_group(inventory):
    message = f"group 'empty' in inventory {inventory.path} has no hosts"
    with pytest.raises(UsageError, match=re.escape(message)):
        parse_targets(["empty"], inventory)
