"""Inventories: INI and YAML files giving the same hosts, groups and variables."""

from __future__ import annotations

import re
import textwrap
import types
from pathlib import Path

import pytest

from runbook.hosts.inventory import load_inventory
from runbook.hosts.inventory.model import InventoryHost
from runbook.outcomes import UsageError


def write(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source).lstrip("\n"), encoding="utf-8")
    return path


def host(name, address=None, port=None, user=None, **host_vars):
    return InventoryHost(name, address or name, port, user, types.MappingProxyType(host_vars))


INI = """
# hosts before any section are ungrouped
bastion ansible_host=203.0.113.9 ansible_ssh_user=jump

[web]
web1 ansible_host=10.0.0.1 ansible_port=2222 ansible_user=deploy
web2:2200 note="two words" url=http://w/#top
web2 extra=1   # a comment

[db]
db1
[2001:db8::5]:5432

[prod:children]
web
db

[europe:children]
prod

[all:vars]
env=dev
[prod:vars]
env = prod
ansible_user=ops
[web:vars]
tier='front end'
[db:vars]
tier=back

[local]
me ansible_connection=local
"""

YAML = """
all:
  hosts:
    bastion: {ansible_host: 203.0.113.9, ansible_ssh_user: jump}
  vars: {env: dev}
  children:
    europe:
      children:
        prod:
          vars: {env: prod, ansible_user: ops}
          children:
            web:
              hosts:
                web1: {ansible_host: 10.0.0.1, ansible_port: 2222, ansible_user: deploy}
                web2:2200:
                  note: two words
                  url: "http://w/#top"
                  extra: 1
              vars: {tier: front end}
            db:
              hosts:
                db1:
                "[2001:db8::5]:5432":
              vars: {tier: back}
    local:
      hosts:
        me: {ansible_connection: local}
"""


@pytest.mark.parametrize(("name", "source"), [("hosts.ini", INI), ("hosts.yml", YAML)])
def test_groups_children_and_vars(tmp_path, name, source):
    inventory = load_inventory(write(tmp_path, name, source))
    assert list(inventory.hosts) == ["bastion", "web1", "web2", "db1", "2001:db8::5", "me"]
    assert inventory.groups["all"] == tuple(inventory.hosts)
    assert inventory.groups["ungrouped"] == ("bastion",)
    assert inventory.groups["web"] == ("web1", "web2")
    assert inventory.groups["prod"] == ("web1", "web2", "db1", "2001:db8::5")
    assert inventory.groups["europe"] == inventory.groups["prod"]
    assert inventory.groups["local"] == ("me",)
    hosts = inventory.hosts
    assert hosts["bastion"] == host(
        "bastion",
        "203.0.113.9",
        user="jump",
        env="dev",
        ansible_host="203.0.113.9",
        ansible_ssh_user="jump",
    )
    assert hosts["web1"] == host(
        "web1",
        "10.0.0.1",
        2222,
        "deploy",
        env="prod",
        tier="front end",
        ansible_host="10.0.0.1",
        ansible_port="2222",
        ansible_user="deploy",
    )
    assert hosts["web2"].vars["note"] == "two words"
    assert hosts["web2"].vars["url"] == "http://w/#top"  # '#' inside a word is no comment
    assert hosts["db1"].vars == {"env": "prod", "ansible_user": "ops", "tier": "back"}
    assert [h.spec for h in hosts.values()] == [
        "ssh://jump@203.0.113.9",
        "ssh://deploy@10.0.0.1:2222",
        "ssh://ops@web2:2200",
        "ssh://ops@db1",
        "ssh://ops@[2001:db8::5]:5432",
        "local",
    ]


def test_ini_and_yaml_give_the_same_model(tmp_path):
    ini = load_inventory(write(tmp_path, "hosts", INI))
    yaml = load_inventory(write(tmp_path, "hosts.yaml", YAML))
    assert ini.hosts == yaml.hosts
    assert ini.groups == yaml.groups
    assert sorted(ini.names()) == sorted(yaml.names())


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # host vars beat every group
        ("[g]\nh x=host\n[g:vars]\nx=group\n", "host"),
        # a child group beats its parent, whatever the file order
        (
            "[child:vars]\nx=child\n[child]\nh\n[parent:children]\nchild\n[parent:vars]\nx=parent\n",
            "child",
        ),
        # any group beats all
        ("[all:vars]\nx=all\n[g]\nh\n[g:vars]\nx=g\n", "g"),
        # siblings at the same depth: merged by name, the last name wins
        ("[b]\nh\n[a]\nh\n[a:vars]\nx=a\n[b:vars]\nx=b\n", "b"),
        # ... unless ansible_group_priority says otherwise
        ("[b]\nh\n[a]\nh\n[a:vars]\nx=a\nansible_group_priority=5\n[b:vars]\nx=b\n", "a"),
        # a host listed twice: the later variables win
        ("[a]\nh x=1\n[b]\nh x=2\n", "2"),
        # ungrouped hosts get ungrouped:vars
        ("h\n[ungrouped:vars]\nx=u\n", "u"),
    ],
)
def test_variable_precedence(tmp_path, source, expected):
    inventory = load_inventory(write(tmp_path, "hosts", source))
    assert inventory.hosts["h"].vars["x"] == expected


@pytest.mark.parametrize(
    ("pattern", "names"),
    [
        ("web[1:3]", ["web1", "web2", "web3"]),
        ("web[01:03]", ["web01", "web02", "web03"]),
        ("web[08:10].example.com", ["web08.example.com", "web09.example.com", "web10.example.com"]),
        ("db-[a:c]", ["db-a", "db-b", "db-c"]),
        ("n[1:10:4]", ["n1", "n5", "n9"]),
        ("n[a:e:2]", ["na", "nc", "ne"]),
        ("n[:2]", ["n0", "n1", "n2"]),
        ("r[1:2]-[a:b]", ["r1-a", "r1-b", "r2-a", "r2-b"]),
        ("x[7:7]", ["x7"]),
        ("plain", ["plain"]),
    ],
)
def test_ranges(tmp_path, pattern, names):
    inventory = load_inventory(write(tmp_path, "hosts", f"[g]\n{pattern} ansible_port=22\n"))
    assert inventory.groups["g"] == tuple(names)
    assert all(inventory.hosts[name].port == 22 for name in names)
    yaml = load_inventory(write(tmp_path, "hosts.yml", f"g:\n  hosts:\n    {pattern}:\n"))
    assert yaml.groups["g"] == tuple(names)


def test_ungrouped_and_all(tmp_path):
    inventory = load_inventory(
        write(tmp_path, "hosts", "a\nb\n[g]\nb\nc\n[ungrouped]\nd\n[all]\ne\n[empty]\n")
    )
    assert inventory.groups["all"] == ("a", "b", "c", "d", "e")
    assert inventory.groups["ungrouped"] == ("a", "d", "e")  # b also sits in g
    assert inventory.groups["empty"] == ()
    empty = load_inventory(write(tmp_path, "empty.ini", "# nothing yet\n"))
    assert empty.hosts == {}
    assert empty.groups == {"all": (), "ungrouped": ()}


def test_resolve_and_names(tmp_path):
    inventory = load_inventory(write(tmp_path, "hosts", "[web]\nweb1\nweb2\n[db]\ndb1\n"))
    assert [h.name for h in inventory.resolve("web") or ()] == ["web1", "web2"]
    assert [h.name for h in inventory.resolve("db1") or ()] == ["db1"]
    assert [h.name for h in inventory.resolve("all") or ()] == ["web1", "web2", "db1"]
    assert inventory.resolve("webx") is None
    assert inventory.names() == ["web1", "web2", "db1", "all", "ungrouped", "web", "db"]


@pytest.mark.parametrize(
    ("address", "port", "user", "host_vars", "spec"),
    [
        ("web1", None, None, {}, "ssh://web1"),
        ("10.0.0.1", 2222, "deploy", {}, "ssh://deploy@10.0.0.1:2222"),
        ("2001:db8::1", None, "root", {}, "ssh://root@[2001:db8::1]"),
        ("2001:db8::1", 22, None, {}, "ssh://[2001:db8::1]:22"),
        ("web1", 22, "u", {"ansible_connection": "local"}, "local"),
        ("web1", None, None, {"ansible_connection": "paramiko"}, "ssh://web1"),
        ("c1", None, None, {"ansible_connection": "docker"}, "docker://c1"),
    ],
)
def test_spec(address, port, user, host_vars, spec):
    assert InventoryHost("h", address, port, user, host_vars).spec == spec


@pytest.mark.parametrize(
    ("name", "source"),
    [
        ("hosts", "all:\n  hosts:\n    web1:\n"),
        ("hosts", "# a YAML inventory\n---\nweb:\n  hosts: {web1: }\n"),
        ("hosts.YAML", "web:\n  hosts: {web1: }\n"),
        ("inventory", "all: {hosts: {web1: }}\n"),
    ],
)
def test_yaml_is_recognised(tmp_path, name, source):
    assert "web1" in load_inventory(write(tmp_path, name, source)).hosts


def test_yaml_details(tmp_path):
    path = write(
        tmp_path,
        "hosts.yml",
        """
        all:
          children:
            web:
              hosts:
                web0: &base {ansible_user: ops, tags: [a, b], limits: {cpu: 2}, flag: true, none: ~}
                web1:
                  <<: *base
                  ansible_port: "2222"
        """,
    )
    inventory = load_inventory(path)
    web1 = inventory.hosts["web1"]
    assert (web1.user, web1.port) == ("ops", 2222)
    assert dict(web1.vars) == {
        "ansible_user": "ops",
        "tags": '["a", "b"]',
        "limits": '{"cpu": 2}',
        "flag": "true",
        "none": "",
        "ansible_port": "2222",
    }
    assert inventory.groups["web"] == ("web0", "web1")


def test_empty_yaml(tmp_path):
    assert load_inventory(write(tmp_path, "hosts.yml", "# nothing\n")).hosts == {}


INI_ERRORS = [
    ("[web]\nweb1\n[web:servers]\n", 3, "unknown section kind 'servers' in [web:servers]"),
    ("[web]\nweb1\n[web:]\n", 3, "unknown section kind ''"),
    ("[web servers]\n", 1, "malformed section header '[web servers]'"),
    ("[prod:children]\nweb\n", 2, "unknown child group 'web' of 'prod'"),
    ("[db]\nd\n[web:vars]\nx=1\n", 3, "vars for unknown group 'web'"),
    ("[a:children]\nb\n[b:children]\nc\n[c:children]\na\n", 6, "cyclic children: a -> b -> c -> a"),
    ("[a:children]\na\n", 2, "cyclic children: a -> a"),
    ("[a:children]\nall\n", 2, "group 'all' cannot be a child of 'a'"),
    ("[a:children]\nb c\n[b]\n[c]\n", 2, "expected one group name, got 'b c'"),
    ("[g]\nweb[3:1]\n", 2, "bad range [3:1]: start is after end"),
    ("[g]\nweb[1:x]\n", 2, "bad range [1:x]: expected numbers or single letters"),
    ("[g]\nweb[1-3]\n", 2, "bad range [1-3] (expected [start:end] or [start:end:step])"),
    ("[g]\nweb[1:9:0]\n", 2, "bad range [1:9:0]: step must be a positive integer"),
    ("[g]\nweb[01:100]\n", 2, "zero-padded start and end differ in length"),
    ("[g]\nweb[1:3\n", 2, "bad host pattern 'web[1:3' (unbalanced brackets)"),
    ("[g]\nweb1 ansible_port=ssh\n", 2, "bad port 'ssh' (expected 1-65535)"),
    ("[g]\nweb1 ansible_ssh_port=70000\n", 2, "bad port '70000' (expected 1-65535)"),
    ("[g]\nweb1:0\n", 2, "bad port '0' (expected 1-65535)"),
    ("[g:vars]\nansible_port=-1\n[g]\n", 2, "bad port '-1' (expected 1-65535)"),
    ("[g]\nweb1 ansible_user\n", 2, "malformed key=value 'ansible_user'"),
    ("[g]\nweb1 =x\n", 2, "malformed key=value '=x'"),
    ("[g]\n\nweb1 note='unclosed\n", 3, "cannot split"),
    ("[g]\n[g:vars]\njust a line\n", 3, "malformed key=value 'just a line'"),
    ("[g]\n[g:vars]\nansible_group_priority=high\n", 3, "bad ansible_group_priority 'high'"),
    ("[g]\nweb1 ansible_host='a b'\n", 2, "bad ansible_host 'a b'"),
    ("[g]\nfe80::zz\n", 2, "bad host pattern 'fe80::zz'"),
    ("[g]\nweb1 ansible_connection=a;b\n", 2, "bad ansible_connection 'a;b'"),
    ("[g]\n[::1]x\n", 2, "bad host pattern '[::1]x'"),
]

YAML_ERRORS = [
    ("all:\n  hosts:\n    web1: {ansible_port: x}\n", 3, "bad port 'x' (expected 1-65535)"),
    (
        "all:\n  children:\n    web:\n      host:\n        w1:\n",
        4,
        "unknown key 'host' in 'web' (expected hosts, vars or children)",
    ),
    ("all:\n  hosts:\n    - web1\n", 3, "hosts of 'all' must be a mapping"),
    ("- all\n", 1, "the top level must be a mapping"),
    ("all:\n  hosts:\n    web1: {a: 1\n", 4, "invalid YAML"),
    ("all:\n  hosts: {web1: }\n  vars: [1, 2]\n", 3, "vars of 'all' must be a mapping"),
    ("all:\n  hosts:\n    web[5:1]:\n", 3, "bad range [5:1]: start is after end"),
    ("all:\n  children:\n    all:\n", 3, "group 'all' cannot be a child of 'all'"),
    ("a: &a\n  children:\n    b: *a\n", 3, "group 'b' contains itself"),
    ("a:\n  children:\n    b:\n      children:\n        a:\n", 5, "cyclic children: a -> b -> a"),
    ("all:\n  hosts:\n    web 1:\n", 3, "bad host name 'web 1'"),
    ("all: {}\n---\nall: {}\n", 2, "invalid YAML"),
    ("all:\n  hosts:\n    web\x01:\n", 3, "invalid YAML: special characters are not allowed"),
    ("all:\n  hosts:\n    web1: {ansible_connection: 'a;b'}\n", 3, "bad ansible_connection"),
]


@pytest.mark.parametrize(
    ("name", "source", "line", "problem"),
    [("hosts.ini", *case) for case in INI_ERRORS] + [("hosts.yml", *case) for case in YAML_ERRORS],
)
def test_errors_name_file_and_line(tmp_path, name, source, line, problem):
    path = write(tmp_path, name, source)
    with pytest.raises(UsageError) as info:
        load_inventory(path)
    message = str(info.value)
    assert message.startswith(f"inventory {path}:{line}: "), message
    assert problem in message
    assert "\n" not in message


def test_file_errors(tmp_path):
    with pytest.raises(UsageError, match=re.escape(f"inventory {tmp_path / 'nope'}: no such file")):
        load_inventory(tmp_path / "nope")
    with pytest.raises(UsageError, match=re.escape(f"inventory {tmp_path}: cannot read: ")):
        load_inventory(tmp_path)
    latin1 = tmp_path / "latin1.ini"
    latin1.write_bytes(b"[g]\nweb1\ncaf\xe9\n")
    with pytest.raises(UsageError, match=re.escape(f"inventory {latin1}:3: not UTF-8 text")):
        load_inventory(latin1)


def test_yaml_is_imported_only_for_yaml_inventories(tmp_path):
    import subprocess
    import sys

    path = write(tmp_path, "hosts", "[g]\nweb1\n")
    code = (
        "import sys; from pathlib import Path; from runbook.hosts.inventory import load_inventory; "
        f"load_inventory(Path({str(path)!r})); print('yaml' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("line", "address", "port"),
    [
        ("[2001:db8::1]", "2001:db8::1", None),
        ("[2001:db8::1]:2222", "2001:db8::1", 2222),
        ("2001:db8::1", "2001:db8::1", None),
        ("web1.example.com:2200", "web1.example.com", 2200),
    ],
)
def test_addresses_in_host_lines(tmp_path, line, address, port):
    inventory = load_inventory(write(tmp_path, "hosts", f"[g]\n{line}\n"))
    (host,) = inventory.resolve("g") or ()
    assert (host.name, host.address, host.port) == (address, address, port)
