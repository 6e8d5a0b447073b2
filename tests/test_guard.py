"""The read-only guard: the command corpus, allowlist extensions and plugin policies."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap

import pytest

from runbook.hosts.host import Host
from runbook.hosts.local import LocalBackend
from runbook.outcomes import ReadOnlyViolation
from runbook.pluginmanager import load_config
from runbook.safety.guard import Refused
from runbook.safety.guard import check_command
from runbook.safety.guard import make_policy
from runbook.safety.guard import split_commands
from runbook.steps import Step
from runbook.steps import current_step

#: Read-only commands SREs type during incidents: every one must be allowed.
ALLOWED = [
    "ps aux",
    "ps -eo pid,ppid,%cpu,%mem,cmd --sort=-%cpu",
    "ps -p 1 -o comm=",
    "ps -eLf | wc -l",
    "top -b -n1",
    "top -b -n 1 -o %MEM",
    "ss -tanp",
    "ss -s",
    "netstat -tulpn",
    "df -h",
    "df -i /var",
    "du -sh /var/* 2>/dev/null | sort -h | tail",
    "free -m",
    "uptime",
    "vmstat 1 5",
    "iostat -x 1 3",
    "mpstat -P ALL 1 1",
    "pidstat -u 1 1",
    "journalctl -u nginx --since '1 hour ago' --no-pager",
    "journalctl -k -p err -n 100",
    "journalctl --disk-usage",
    "dmesg -T | tail -n 20",
    "dmesg --level=err",
    "grep -c ERROR /var/log/app.log",
    "grep -rl 'OutOfMemory' /var/log/",
    "zgrep -c ERROR /var/log/app.log.1.gz",
    "grep ERROR /var/log/app.log || true",
    "awk '{print $1}' /var/log/nginx/access.log | sort | uniq -c | sort -rn | head",
    "awk -F: '{print $1}' /etc/passwd",
    "sed -n '1,5p' /etc/hosts",
    "sed -n '/ERROR/p' /var/log/app.log",
    "tail -n 50 /var/log/syslog",
    "head -c 4096 /var/log/messages",
    "wc -l /var/log/app.log",
    "cat /proc/loadavg",
    "cat /proc/1/status | grep -i threads",
    "cat /proc/loadavg; cat /proc/meminfo",
    "ls -la /tmp 2>/dev/null",
    "tail -n 50 /var/log/syslog >/dev/null",
    "find /var/log -size +100M",
    "find / -xdev -type f -size +1G -print",
    "find /var/log -name '*.gz' -mtime +7",
    "stat -c %s /var/log/app.log",
    "readlink -f /proc/1/exe",
    "lsof -p 1234",
    "lsof +L1",
    "lsblk",
    "pgrep -f gunicorn",
    "pidof nginx",
    "kubectl get pods -o wide",
    "kubectl get pods -A | grep -v Running",
    "kubectl describe pod web-1 -n prod",
    "kubectl logs deploy/web --tail=100",
    "docker ps -a",
    "docker logs --tail 100 web",
    "docker inspect web",
    "systemctl status nginx",
    "systemctl is-active postgresql",
    "systemctl --no-pager list-units --failed",
    "ip addr show",
    "ip route",
    "sysctl net.core.somaxconn",
    "sysctl -a",
    "dig +short example.com",
    "getent hosts db.internal",
    "nslookup example.com",
    "date -u +%s",
    "hostname -f",
    "uname -a",
    "id -u",
    "who",
    "last -n 10",
    "jq .status /srv/app/status.json",
    "echo hello",
    "printf '%s\\n' a b",
    "test -f /run/app.pid && cat /run/app.pid",
    "LC_ALL=C ps aux",
    "env LC_ALL=C sort /tmp/list",
    "timeout 5 cat /proc/meminfo",
    "nice -n 10 du -sh /var",
    "xargs -n1 echo < /tmp/list",
    "grep foo < /tmp/input.txt",
    # Shell idioms that only move output between standard streams.
    "ps aux 2>&1 | head",
    "echo 'no pid file' >&2",
    # Comparisons inside awk and addresses inside sed are not writes.
    "ps aux | awk '$3 > 50.0'",
    "awk '$9 >= 500' /var/log/nginx/access.log",
    "sed -n '/slow request/p' /var/log/app.log",
    # Global flags before the verb.
    "kubectl -n kube-system get pods",
    "kubectl --context=prod get pods -o json",
    "docker -H unix:///run/docker.sock ps",
    "systemctl -p ActiveState show nginx",
    "systemctl is-system-running",
    # Commands the Host system helpers send, globs and interpolated arguments included.
    "head -n 1 /proc/stat; sleep '0.200'; head -n 1 /proc/stat",
    "cat /proc/stat /proc/[0-9]*/stat",
    "df -P -k '/srv/a b; rm -rf /'",
    # Expansions that cannot turn into an option, and substitutions that only read.
    "grep -c ERROR /var/log/*.log",
    "ls -la ~/",
    'echo "pid file: $HOME/app.pid"',
    'cat "/proc/$(pidof nginx)/status"',
    "grep -c $'ERROR' /var/log/app.log",
    # Subshells, groups, negation and harmless descriptor juggling.
    "(uptime; free -m) | head",
    "{ uptime; df -h; } 2>&1",
    "! grep -q ERROR /var/log/app.log",
    "ls /nonexistent 2>&-",
    "[ -f /run/app.pid ] && echo running",
    # Verbs, scripts and operands that only read.
    "ip -br a",
    "ip -4 route list",
    "ip route get 1.1.1.1",
    "ss -lntp",
    "sed -n '$p' /var/log/app.log",
    "sed -E 's/(a|b)/x/2' /tmp/list",
    "sed -n '/begin/,/end/{p}' /var/log/app.log",
    "sed ':a;N;$!ba;s/\\n/ /g' /tmp/list",
    "sed 's/[[:space:]]*$//' /tmp/list",
    "awk -F, '$3 ~ /err|warn/ { n++ } END { print n }' /tmp/list",
    "awk '{ printf \"%s %d\\n\", $1, $2 }' /tmp/list",
    "awk '{ print ($3 > 50) }' /tmp/list",
    "awk 'BEGIN { while ((getline line < \"/etc/passwd\") > 0) n++; print n }'",
    "date -d '1 hour ago' +%FT%T",
    "sysctl -n net.core.somaxconn",
    "dmesg -T --level=err,warn",
    "uniq -c /tmp/in.txt",
    "sort -k2,2n -t: /etc/passwd",
    "sar -u 1 1",
    "ionice -p 1234",
    "ionice -c3 du -sh /var",
    "timeout -k 5 10 cat /proc/meminfo",
    "stdbuf -oL tail -n 5 /var/log/syslog",
    "xargs -I{} cat {} < /tmp/list",
    "LC_ALL=C TZ=UTC date",
    "/usr/bin/uptime",
    # HTTP GET and HEAD with curl, ~/.curlrc ignored (-q first); the http fixture's probes.
    "curl -q -sS http://localhost:8080/health",
    "curl -qsSf --max-time 5 http://127.0.0.1/health",
    "curl --disable -s https://example.com/",
    "curl -q -s -o /dev/null -w '%{http_code} %{time_total}' https://example.com/",
    "curl -q -I https://example.com",
    "curl -q -sS -X HEAD http://localhost/",
    "curl -q -sS -XGET -D - -o - -H 'Accept: application/json' http://localhost/status",
    "curl -q -sS -u monitor:hunter2 -A probe/1.0 http://localhost/metrics | grep -c up",
    "curl -q -sSL --proto-redir =http,https --max-redirs 5 http://localhost/",
    "curl -q -sS --resolve example.com:443:127.0.0.1 https://example.com/ | jq .status",
    "curl -q -v -k -I -o /dev/null --connect-to example.com:443:10.0.0.5:443 https://example.com/",
    "curl -q -sS -T /dev/null -o /dev/null --connect-timeout 1 -w '%{time_connect}' telnet://db:5432",
    "timeout 5 curl -q -s -- http://localhost/health",
    "getent ahosts db.internal",
    # Certificate files with openssl x509: it only prints fields.
    "openssl x509 -noout -enddate -in /etc/ssl/certs/server.pem",
    "openssl x509 -in /etc/nginx/tls.crt -noout -subject -issuer -dates",
    "openssl x509 -noout -checkend 86400 -in /etc/nginx/tls.crt",
    "openssl x509 -noout -text < /etc/nginx/tls.crt",
    "openssl version -a",
]

#: Commands that change something (or could run anything): every one must be refused.
REFUSED = [
    "rm -rf /tmp/x",
    "/bin/rm /var/log/app.log",
    "mv /var/log/a /var/log/b",
    "cp a b",
    "chmod 777 /etc/passwd",
    "truncate -s0 /var/log/app.log",
    "sed -i 's/a/b/' /etc/hosts",
    "sed -ie 's/a/b/' /etc/hosts",
    "sed --in-place 's/a/b/' /etc/hosts",
    "sed -n 'w /tmp/out' /etc/hosts",
    "find /tmp -delete",
    "find /tmp -name '*.log' -exec rm {} ;",
    "find . -execdir rm {} +",
    "find . -ok rm {} ;",
    "find / -fprint /tmp/out",
    "awk '{system(\"rm \" $1)}' /tmp/list",
    "awk '{print > \"/tmp/out\"}' /tmp/list",
    "awk '{print | \"sh\"}' /tmp/list",
    "tee /tmp/out",
    "ps aux | tee /tmp/out",
    "echo x > /etc/passwd",
    "echo x >> /etc/hosts",
    "cat /etc/hosts 2> /tmp/err",
    "ls &> /tmp/out",
    "ls >& /tmp/out",
    "dd if=/dev/zero of=/dev/sda",
    "kill -9 1234",
    "killall nginx",
    "pkill -f app",
    "systemctl restart nginx",
    "systemctl stop nginx",
    "systemctl --now disable nginx",
    "kubectl delete pod web-1",
    "kubectl scale deploy/web --replicas=0",
    "kubectl apply -f deploy.yaml",
    "docker rm -f web",
    "docker exec web sh",
    "docker restart web",
    "ls | xargs docker rm",
    "cat $(ls)",
    "echo $(rm -rf /)",
    "echo `id`",
    "diff <(ls a) <(ls b)",
    "echo hi >(cat)",
    "cat <<EOF",
    "cat /etc/hosts\nrm -rf /",
    "(rm /tmp/x)",
    "ls;(rm /tmp/x)",
    "ls; rm /tmp/x",
    "ls && rm /tmp/x",
    "ls || rm /tmp/x",
    "ls & rm /tmp/x",
    "env rm -rf /",
    "env -u HOME rm /tmp/x",
    "env FOO=1 rm /tmp/x",
    "FOO=bar rm /tmp/x",
    "nice rm -rf /",
    "nice -n 5 rm -rf /",
    "ionice -c3 rm /tmp/x",
    "stdbuf -oL rm /tmp/x",
    "timeout 5 rm -rf /",
    "timeout -s KILL 5 rm /tmp/x",
    "xargs rm < /tmp/list",
    "ls | xargs rm",
    "ls | xargs -n1 rm",
    "xargs -I{} rm {}",
    "sudo ps aux",
    "sudo cat /etc/shadow",
    "sh -c 'rm -rf /'",
    "bash -c 'ls'",
    "python3 -c 'print(1)'",
    "sysctl -w vm.swappiness=10",
    "sysctl vm.swappiness=10",
    "sysctl -p",
    "date -s '2020-01-01'",
    "date --set=now",
    "hostname evil",
    "ip link set eth0 down",
    "ip addr add 10.0.0.1/24 dev eth0",
    "dmesg -c",
    "journalctl --vacuum-time=1d",
    "journalctl --rotate",
    "reboot",
    "shutdown -h now",
    "crontab -r",
    "iptables -F",
    "curl -X POST http://localhost/admin",
    "mkfs.ext4 /dev/sdb",
    # What cannot be parsed cannot be vetted: fail closed.
    "echo 'unterminated",
    # Clobbering redirection and bash's pipe-with-stderr hide a write behind a read.
    "cat /etc/hosts >| /tmp/out",
    "ps aux |& tee /tmp/out",
    # Parameter expansion smuggles a dangerous flag past the word checks.
    "D=-delete; find /tmp $D",
    "find /tmp $'-delete'",
    # env -S runs its argument as a command line.
    "env -S'rm -rf /tmp/x'",
    "env --split-string='rm -rf /tmp/x'",
    # Allowlisted commands with flags or operands that write.
    "sort -o /etc/passwd /tmp/list",
    "uniq /tmp/in.txt /tmp/out.txt",
    "sar -o /tmp/sa 1 1",
    "awk -i inplace '{print}' /etc/hosts",
    "date 123112002030",
    "ss -K dst 10.0.0.1",
    "ip netns exec ns1 rm -rf /",
    "ip l s eth0 down",
    "ip a a 10.0.0.1/24 dev eth0",
    "ip route append 10.0.0.0/8 via 10.0.0.1",
    "ionice -c3 -p1234",
    "sysctl --system",
    "sysctl -p/etc/sysctl.conf",
    "dmesg -n 1",
    # git's -c sets any configuration, including a pager or hook that runs a command.
    "git -c core.pager='rm -rf /tmp/x' log",
    # Expansions where a word's value decides what runs.
    "echo $HOME",
    'find /tmp "$D"',
    "$(echo rm) -rf /tmp/x",
    "cat ${HOME:-/}",
    "echo ${x=1}",
    "ls {-delete,x}",
    "find /tmp *",
    "find /tmp $'\\x2ddelete'",
    'sed -n $"w /tmp/out" /etc/hosts',
    "echo ${a[$(id)]}",
    "[ -v 'a[$(id)]' ]",
    "echo $((1 + 1))",
    "((x = 1))",
    'cat "/proc/$(rm -rf /tmp/x)/status"',
    # Variables that change what an allowed command runs.
    "PATH=/tmp ls",
    "LD_PRELOAD=/tmp/x.so ps aux",
    "env PAGER=/tmp/x systemctl status nginx",
    # Programs run by path from anywhere but the system directories.
    "./cat /etc/hosts",
    "/tmp/bin/ls",
    # Shell syntax that is not supported: refused, not guessed.
    "if true; then rm /tmp/x; fi",
    "for f in /tmp/x; do rm $f; done",
    "f() { rm /tmp/x; }; f",
    "ls # comment",
    "ls;#x",
    "ls <> /tmp/out",
    "ls 3>/tmp/out",
    "(ls) > /tmp/out",
    "{ ls; } > /tmp/out",
    "> /tmp/out",
    'cat <<< "$(rm -rf /tmp/x)"',
    # sed and awk scripts, options and flags that write or run.
    "sed 's/a/b/w /tmp/out' /etc/hosts",
    "sed 's/a/b/e' /etc/hosts",
    "sed -n '1e id' /etc/hosts",
    "sed --in-pl 's/a/b/' /etc/hosts",
    "sed 's/a/b/' -i /etc/hosts",
    "sed -f /tmp/script /etc/hosts",
    "awk -f /tmp/prog /etc/hosts",
    'awk \'{ printf("%s", $1) > "/tmp/out" }\' /etc/hosts',
    "awk '{ \"date\" | getline d }' /etc/hosts",
    "awk '@load \"rwarray\"; BEGIN { }'",
    # GNU sed and gawk read a / inside [...] as part of the regex, others end it there:
    # a script those readings split differently could hide a w command from the guard.
    "sed -n 's/[/]/;p/w /tmp/out' /etc/hosts",
    "awk '/[^]/]/; system(\"id\"); /x/' /etc/hosts",
    "sed 'b end w /tmp/out' /etc/hosts",
    "awk --profile=/tmp/prof '{ }' /etc/hosts",
    # Abbreviated long options are what getopt takes them for.
    "journalctl --rot",
    "sort --out /tmp/out /etc/hosts",
    "date --se=now",
    "sysctl --sys",
    # Wrappers: options that run commands, and commands xargs completes.
    "env -iS'rm -rf /tmp/x'",
    "xargs sed -n p",
    "xargs timeout 5",
    "sudo -u root ls",
    'sh -c "$X"',
    "bash -lc ls",
    "pidstat -e rm /tmp/x",
    "ip -batch /tmp/commands",
    "ip vrf exec blue rm /tmp/x",
    "kubectl --log-file=/tmp/log get pods",
    "kubectl --mystery get pods",
    "systemctl --mystery status restart nginx",
    "docker container rm web",
    "hostname -F /etc/hostname",
    # curl: methods other than GET and HEAD, bodies, uploads and files written.
    "curl -q -X POST http://localhost/admin",
    "curl -q -XDELETE http://localhost/users/1",
    "curl -q --request PUT http://localhost/x",
    "curl -q -X get http://localhost/",
    "curl -q -d x=1 http://localhost/",
    "curl -q --data-binary @/etc/passwd http://localhost/",
    "curl -q --json '{}' http://localhost/",
    "curl -q -G -d q=1 http://localhost/search",
    "curl -q -F file=@/etc/hosts http://localhost/upload",
    "curl -q -T /etc/hosts http://localhost/",
    "curl -q -T /dev/null http://localhost/",
    "curl -q -o /tmp/out http://localhost/",
    "curl -q -O http://localhost/file",
    "curl -q --remote-name-all http://localhost/file",
    "curl -q --create-dirs -o /tmp/a/b http://localhost/",
    "curl -q -D /tmp/headers http://localhost/",
    "curl -q -c /tmp/jar http://localhost/",
    "curl -q --trace /tmp/trace http://localhost/",
    "curl -q -w @/tmp/format http://localhost/",
    "curl -q -w '%output{/tmp/x}%{http_code}' http://localhost/",
    "curl -q -K /tmp/config http://localhost/",
    "curl -q -H @/tmp/headers http://localhost/",
    "curl -q -H 'X-HTTP-Method-Override: DELETE' http://localhost/users/1",
    "curl -q --Output /tmp/x http://localhost/",
    "curl -q -x http://proxy:3128 http://localhost/",
    # curl: ~/.curlrc may add options (remote-name-all, data) unless -q comes first.
    "curl -s http://localhost/health",
    "curl -s -q http://localhost/health",
    "curl --disable-eprt http://localhost/",
    # curl: protocols that send commands, and redirects that could reach them.
    "curl -q file:///etc/shadow",
    "curl -q dict://localhost:6379/FLUSHALL",
    "curl -q gopher://localhost:6379/_FLUSHALL",
    "curl -q smtp://mail.example.com",
    "curl -q ftp.example.com/file",
    "curl -q http://localhost/ ftp://localhost/",
    "curl -q -sL http://localhost/",
    "curl -q -L --proto-redir all http://localhost/",
    # curl: telnet:// sends standard input unless it reads nothing (-T /dev/null).
    "curl -q telnet://localhost:6379",
    "printf 'FLUSHALL\\r\\n' | curl -q telnet://localhost:6379",
    "curl -q -T - telnet://localhost:6379",
    "curl -q -T /dev/null telnet://a:6379 telnet://b:6379",
    # openssl: s_client sends standard input to the server; other commands write files.
    "openssl s_client -connect example.com:443",
    "openssl s_client -connect db:6380 < /tmp/commands",
    "openssl x509 -in /tmp/c.pem -out /tmp/c.der",
    "openssl x509 -req -in /tmp/csr -signkey /tmp/key",
    "openssl x509 -noout -engine /tmp/evil.so -in /tmp/c.pem",
    "openssl req -new -x509 -keyout /tmp/k -out /tmp/c",
    "openssl enc -d -in /tmp/x -out /tmp/y",
    "openssl",
]


@pytest.mark.parametrize("command", ALLOWED)
def test_read_only_command_is_allowed(command):
    check_command(command, None)


@pytest.mark.parametrize("command", REFUSED)
def test_changing_command_is_refused(command):
    with pytest.raises(Refused):
        check_command(command, None)


def test_corpus_is_large_and_has_no_contradictions():
    assert len(set(ALLOWED)) == len(ALLOWED) >= 40
    assert len(set(REFUSED)) == len(REFUSED) >= 40
    assert not set(ALLOWED) & set(REFUSED)


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("sed -i 's/a/b/' f", "sed -i"),
        ("find /tmp -delete", "-delete"),
        ("echo x > /etc/passwd", "'/etc/passwd'"),
        ("cat $(ls)", "command substitution"),
        ("echo `id`", "backtick"),
        ("diff <(ls a) <(ls b)", "process substitution"),
        ("cat /etc/hosts\nrm -rf /", "newline"),
        ("systemctl restart nginx", "systemctl restart"),
        ("kubectl delete pod x", "kubectl delete"),
        ("sudo ls", "'sudo' is not on the read-only allowlist"),
        ("timeout 5 rm x", "'rm' is not on the read-only allowlist"),
        ("D=-delete; find /tmp $D", "sets a shell variable"),
        ("find /tmp $X", "could expand to an option"),
        ("find /tmp $'-delete'", "find -delete"),
        ("cat /etc/hosts >| /tmp/out", "'>|' to '/tmp/out'"),
        ("env -S'rm -rf /tmp/x'", "env -S"),
        ("sort -o /etc/passwd f", "sort -o"),
        ("uniq in.txt out.txt", "uniq INPUT OUTPUT"),
        ("date 123112002030", "sets the clock"),
        ("ip l s eth0 down", "ip l s is not read-only"),
        ("ionice -c3 -p1234", "other processes"),
        ("sh -c 'rm -rf /tmp/x'", "'rm' is not on the read-only allowlist"),
        ("bash -c 'ls'", "nested shell"),
        ("PATH=/tmp ls", "setting PATH"),
        ("ls # x", "comments"),
        ("awk '$1 > 5 { print > \"out\" }' f", "print > FILE"),
        ("sed -n '/slow/w out' f", "sed w writes"),
        ("curl -q -X POST http://a/", "only GET and HEAD read"),
        ("curl -q -d x=1 http://a/", "curl -d sends a request body"),
        ("curl -q -o /tmp/out http://a/", "curl -o /tmp/out writes to a file"),
        ("curl -s http://a/", "start with -q"),
        ("curl -q dict://a:6379/", "the scheme dict://"),
        ("curl -q a.example/", "a URL without a scheme"),
        ("curl -q telnet://a:6379", "one URL with -T /dev/null"),
        ("curl -q -sL http://a/", "--proto-redir =http,https"),
        ("curl -q -H 'X-HTTP-Method-Override: PUT' http://a/", "another method"),
        ("openssl s_client -connect a:443", "sends its standard input"),
        ("openssl x509 -in c.pem -out c.der", "-out writes a file"),
    ],
)
def test_refusal_says_what_was_refused(command, reason):
    with pytest.raises(Refused) as info:
        check_command(command, None)
    assert reason in str(info.value)


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("ps aux", [["ps", "aux"]]),
        ("ps aux | grep x | wc -l", [["ps", "aux"], ["grep", "x"], ["wc", "-l"]]),
        ("a && b || c; d", [["a"], ["b"], ["c"], ["d"]]),
        ("grep 'a | b' f", [["grep", "a | b", "f"]]),
        ('grep "x;y" f', [["grep", "x;y", "f"]]),
        ("ls 2>/dev/null", [["ls"]]),
        ("ls -la /tmp 2>/dev/null | head", [["ls", "-la", "/tmp"], ["head"]]),
        ("grep x < in.txt", [["grep", "x"]]),
        ("", []),
        ("find /tmp $'-delete'", [["find", "/tmp", "-delete"]]),
        ("cat $(ls) | wc -l", [["ls"], ["cat", "$(ls)"], ["wc", "-l"]]),
        ("(ps aux; uptime) | head", [["ps", "aux"], ["uptime"], ["head"]]),
        ("echo a\\ b 'c d'\"e\"", [["echo", "a b", "c de"]]),
    ],
)
def test_split_commands(command, expected):
    assert split_commands(command) == expected


@pytest.mark.parametrize(
    "argv",
    [
        ["ps", "-p", "1", "-o", "comm="],
        ["cat", "--", "/etc/hosts; rm -rf /"],  # no shell: `;` is part of a file name
        ["grep", "-c", "$(id)", "/var/log/app.log"],
        ["ls", ">", "/tmp/out"],  # no shell: `>` is an argument, not a redirection
        ["/usr/bin/uptime"],
    ],
)
def test_argv_command_is_checked_without_shell_parsing(argv):
    check_command("display form is not parsed $(", argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["rm", "-rf", "/tmp/x"],
        ["sh", "-c", "ls"],
        ["find", "/tmp", "-delete"],
        ["sed", "-i", "s/a/b/", "/etc/hosts"],
        ["timeout", "5", "kill", "1"],
        ["systemctl", "restart", "nginx"],
        ["curl", "-q", "-X", "POST", "http://a/"],
        ["curl", "-q", "-sS", "-d", "x=1", "http://a/"],
    ],
)
def test_argv_command_is_refused(argv):
    with pytest.raises(Refused):
        check_command("ls", argv)


@pytest.mark.parametrize(
    ("extra", "command"),
    [
        (["systemctl restart nginx"], "systemctl restart nginx"),
        (["systemctl restart"], "systemctl restart nginx --no-block"),
        (["my-health-probe"], "my-health-probe --json | jq .status"),
        (["kubectl rollout status"], "timeout 30 kubectl rollout status deploy/web"),
    ],
)
def test_extension_allows_a_command_prefix(extra, command):
    with pytest.raises(Refused):
        check_command(command, None)
    check_command(command, None, extra)


@pytest.mark.parametrize(
    ("extra", "command"),
    [
        (["systemctl restart nginx"], "systemctl restart postgresql"),
        (["systemctl restart"], "systemctl stop nginx"),
        (["my-health-probe"], "my-health-probe; rm -rf /tmp/x"),
        (["my-health-probe"], "my-health-probe > /tmp/out"),
        (["my-health-probe"], "my-health-probe $(rm -rf /tmp/x)"),
    ],
)
def test_extension_allows_nothing_beyond_its_prefix(extra, command):
    with pytest.raises(Refused):
        check_command(command, None, extra)


@pytest.mark.parametrize(
    ("extra", "command"),
    [
        (["sudo"], "sudo systemctl status nginx"),
        (["sudo systemctl restart"], "sudo systemctl restart nginx"),
        (["bash -c"], "bash -c 'ps aux | head'"),
        (["psql"], "PGHOST=db psql -c 'select 1'"),
    ],
)
def test_extension_of_a_wrapper_still_judges_what_it_runs(extra, command):
    with pytest.raises(Refused):
        check_command(command, None)
    check_command(command, None, extra)


@pytest.mark.parametrize(
    ("extra", "command"),
    [
        (["sudo"], "sudo rm -rf /tmp/x"),
        (["sudo"], "sudo -i"),
        (["bash -c"], "bash -c 'rm -rf /tmp/x'"),
        (["bash -c"], "bash -c 'ls; sh -c \"rm /tmp/x\"'"),
    ],
)
def test_extension_of_a_wrapper_allows_nothing_it_runs(extra, command):
    with pytest.raises(Refused):
        check_command(command, None, extra)


def test_wrappers_cannot_nest_without_end():
    check_command("timeout 5 nice -n 10 stdbuf -oL env LC_ALL=C du -sh /var", None)
    with pytest.raises(Refused, match="nested"):
        check_command("nice " * 20 + "ls", None)


def test_extension_applies_to_argv_commands():
    with pytest.raises(Refused):
        check_command("", ["systemctl", "reload", "nginx"])
    check_command("", ["systemctl", "reload", "nginx"], ["systemctl reload nginx"])


POLICY_PLUGIN = '''
    """A site policy: trusts its own probe, distrusts uptime, logs every question."""
    from runbook import hookimpl

    ASKED = []


    @hookimpl
    def runbook_command_policy(command, mode, step):
        ASKED.append((command, mode, step.id))
        if command.startswith("site-probe"):
            return "allow"
        if command.startswith("uptime"):
            return "refuse: uptime is banned on this site"
        if command.startswith("cat /etc/shadow"):
            return "refuse"
        return None
'''

SECOND_OPINION = """
    from runbook import hookimpl


    @hookimpl
    def runbook_command_policy(command, mode, step):
        return "allow" if command.startswith("uptime") else None
"""


def _project(tmp_path, toml, **plugins):
    (tmp_path / "runbook.toml").write_text(textwrap.dedent(toml))
    for name, source in plugins.items():
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    return load_config(start=tmp_path)


def _step(allow=()):
    return Step("probe_check", "check", "local", read_only=True, allow_commands=tuple(allow))


def test_plugin_policy_allows_refuses_or_defers(tmp_path):
    config = _project(tmp_path, 'plugins = ["policy.py"]\n', policy=POLICY_PLUGIN)
    policy = make_policy(config, "read-only")
    step = _step()

    assert policy("site-probe --deep", None, step) is None  # not on the allowlist
    refused = policy("uptime", None, step)
    assert isinstance(refused, ReadOnlyViolation)
    assert refused.reason == "uptime is banned on this site"
    assert refused.operation == "uptime"
    bare = policy("cat /etc/shadow", None, step)
    assert bare is not None and bare.reason == "refused by a plugin policy"
    assert policy("ps aux", None, step) is None  # no opinion: the built-in policy allows
    deferred = policy("rm -rf /tmp/x", None, step)  # no opinion: the built-in policy refuses
    assert deferred is not None and "'rm' is not on the read-only allowlist" in deferred.reason

    plugin = config.pluginmanager.get_plugin("policy.py")
    assert ("site-probe --deep", "read-only", "probe_check") in plugin.ASKED


def _crash(*args, **kwargs):
    raise KeyError("surprise")


@pytest.mark.parametrize(
    ("target", "command", "argv"),
    [
        ("runbook.safety.command_rules.RULES", "sed -n p /etc/hosts", None),
        ("runbook.safety.command_rules.RULES", "sed -n p /etc/hosts", ["sed", "-n", "p", "/x"]),
        ("runbook.safety.guard.parse", "uptime", None),
        ("runbook.safety.guard.unwrap", "timeout 5 uptime", None),
    ],
)
def test_a_rule_that_crashes_refuses_the_command(monkeypatch, tmp_path, target, command, argv):
    if target.endswith("RULES"):
        from runbook.safety import command_rules

        monkeypatch.setitem(command_rules.RULES, "sed", _crash)
    else:
        monkeypatch.setattr(target, _crash)
    with pytest.raises(
        Refused, match=r"the read-only guard could not judge this command: .*surprise"
    ):
        check_command(command, argv)
    violation = make_policy(load_config(start=tmp_path), "read-only")(command, argv, _step())
    assert violation is not None and "could not judge this command" in violation.reason


def test_a_plugin_policy_that_crashes_refuses_the_command(tmp_path):
    crashing = """
        from runbook import hookimpl


        @hookimpl
        def runbook_command_policy(command, mode, step):
            raise RuntimeError("the site policy broke")
    """
    config = _project(tmp_path, 'plugins = ["crashing.py"]\n', crashing=crashing)
    violation = make_policy(config, "read-only")("uptime", None, _step())
    assert violation is not None
    assert "could not judge this command" in violation.reason
    assert "the site policy broke" in violation.reason


def test_plugin_policy_sees_the_mode(tmp_path):
    config = _project(tmp_path, 'plugins = ["policy.py"]\n', policy=POLICY_PLUGIN)
    make_policy(config, "execute")("ps aux", None, _step())
    assert config.pluginmanager.get_plugin("policy.py").ASKED == [
        ("ps aux", "execute", "probe_check")
    ]


def test_a_refusal_wins_over_another_plugins_allowance(tmp_path):
    config = _project(
        tmp_path,
        'plugins = ["policy.py", "second.py"]\n',
        policy=POLICY_PLUGIN,
        second=SECOND_OPINION,
    )
    violation = make_policy(config, "read-only")("uptime", None, _step())
    assert violation is not None and violation.reason == "uptime is banned on this site"


def test_configured_and_per_check_allowlists_extend_the_policy(tmp_path):
    config = _project(
        tmp_path,
        """
        [read_only]
        allow = ["systemctl reload nginx"]
        """,
    )
    policy = make_policy(config, "read-only")
    assert policy("systemctl reload nginx", None, _step()) is None
    assert policy("varnishadm ban.list", None, _step()) is not None
    assert policy("varnishadm ban.list", None, _step(["varnishadm ban.list"])) is None
    violation = policy("systemctl restart nginx", None, _step())
    assert violation is not None and "@check(allow_commands=" in str(violation)


def test_refused_command_never_reaches_the_target(tmp_path):
    marker = tmp_path / "marker"
    config = load_config(start=tmp_path)
    host = Host(LocalBackend(), policy=make_policy(config, "read-only"))
    step = _step()
    token = current_step.set(step)
    try:
        with pytest.raises(ReadOnlyViolation, match="touch"):
            host.run("touch %s", str(marker))
        allowed = host.run("echo %s", "still here")
    finally:
        current_step.reset(token)
    assert not marker.exists()
    assert allowed.stdout == "still here\n"
    blocked, ran = step.commands
    assert (blocked.blocked, blocked.exit_status) == (True, None)
    assert "not on the read-only allowlist" in blocked.reason
    assert (ran.blocked, ran.exit_status) == (False, 0)


@pytest.mark.parametrize(
    "command",
    [
        "df -P /",
        "cat /proc/loadavg",
        "ps -e -o pid=,user:32=,pmem=",
        "journalctl -u nginx --since=-10min -n 50",
        "  uptime  ",
        "kubectl get pods -n kube-system -o wide",
        "date +%s",
        "ip -4 addr show",
        "systemctl is-active nginx.service",
    ],
)
def test_plain_words_parse_exactly_as_bash_would(command):
    # The shortcut for plain words (no bashlex) must agree with the full parser.
    from runbook.safety import shell

    assert shell.parse(command) == shell._parse_with_bashlex(command)


@pytest.mark.parametrize("command", ["A=1 cat /etc/hostname", "PAGER=rm git log"])
def test_leading_assignments_never_take_the_plain_words_shortcut(command):
    from runbook.safety import shell

    assert shell.parse(command) == shell._parse_with_bashlex(command)
    assert shell.parse(command)[0].assignments


# --- The in-process guard (PEP 578 audit hooks) -------------------------------------------
#
# Each row is the body of one check and what must hold after the run: the check ends
# ``blocked`` (or, for the reads that must not be refused, ``passed``) and the probe finds
# the world as it was. All rows run as the checks of one runbook in a real subprocess, so
# an attempt that gets through changes that process (or the scratch folder and the victim
# process), never pytest's.

#: (id, body of the check, expected outcome or None for "any", probe of the state after).
IN_PROCESS = [
    # posix functions are what the os module exports: wrapping os.* alone left them open.
    ("posix_mknod", "posix.mknod(S + '/node', 0o600 | stat.S_IFREG)", "blocked", "absent:node"),
    ("posix_mkfifo", "posix.mkfifo(S + '/fifo')", "blocked", "absent:fifo"),
    ("posix_write", "posix.write(FD, b'lost')", "blocked", "intact"),
    ("posix_writev", "posix.writev(FD, [b'lost'])", "blocked", "intact"),
    (
        "posix_sendfile",
        "posix.sendfile(FD, os.open(SOURCE, os.O_RDONLY), 0, 4)",
        "blocked",
        "intact",
    ),
    (
        "posix_setpriority",
        "posix.setpriority(posix.PRIO_PROCESS, PID, 19)",
        "blocked",
        "victim_priority",
    ),
    ("posix_sched_setaffinity", "posix.sched_setaffinity(PID, {0})", "blocked", "victim_affinity"),
    # The originals behind the wrappers are out of reach.
    ("original_write", "original(os.write)(FD, b'lost')", "blocked", "intact"),
    ("original_posix_write", "original(posix.write)(FD, b'lost')", "blocked", "intact"),
    (
        "original_thread_start",
        "run_with(original(threading.Thread.start), lambda: open(S + '/file', 'w'))",
        "blocked",
        "intact",
    ),
    (
        "original_fork_exec",
        "original(_posixsubprocess.fork_exec)(*fork_exec_args(S + '/forked'))",
        "blocked",
        "absent:forked",
    ),
    # Calls CPython 3.11 does not audit.
    (
        "copy_file_range",
        "os.copy_file_range(os.open(SOURCE, os.O_RDONLY), FD, 4)",
        "blocked",
        "intact",
    ),
    ("splice", "os.splice(os.open(SOURCE, os.O_RDONLY), FD, 4)", "blocked", "intact"),
    (
        "pidfd_send_signal",
        "signal.pidfd_send_signal(os.pidfd_open(PID), signal.SIGKILL)",
        "blocked",
        "victim_alive",
    ),
    (
        "sched_setscheduler",
        "os.sched_setscheduler(PID, os.SCHED_IDLE, os.sched_param(0))",
        "blocked",
        "victim_scheduler",
    ),
    (
        "sched_setparam",
        "os.sched_setparam(PID, os.sched_param(0))",
        "blocked",
        "victim_scheduler",
    ),
    (
        "readline_write_history",
        "readline.write_history_file(S + '/history')",
        "blocked",
        "absent:history",
    ),
    (
        "readline_append_history",
        "readline.add_history('lost'); readline.append_history_file(1, S + '/file')",
        "blocked",
        "intact",
    ),
    (
        "prlimit_set",
        "resource.prlimit(PID, resource.RLIMIT_NOFILE, (64, 64))",
        "blocked",
        "victim_limits",
    ),
    ("dup2_over_stdout", "os.dup2(FD, 1); print('lost', flush=True)", "blocked", "intact"),
    ("dup2_over_stderr", "os.dup2(FD, 2); os.write(2, b'lost')", "blocked", "intact"),
    ("dup3", "os.dup2(FD, 1, inheritable=False)", "blocked", "intact"),
    ("fd_alias", "open('/proc/self/fd/%d' % FD, 'w').write('lost')", "blocked", "intact"),
    ("dev_fd_alias", "open('/dev/fd/%d' % FD, 'a').write('lost')", "blocked", "intact"),
    ("mmap_shared", "mmap.mmap(FD_RW, 4)[:4] = b'lost'", "blocked", "intact"),
    # Paths that only pretend to be harmless.
    ("str_subclass_path", "open(Sneaky(S + '/file'), 'w').write('lost')", "blocked", "intact"),
    ("str_subclass_equality", "open(Equal(S + '/file'), 'w').write('lost')", "blocked", "intact"),
    ("pathlike_changes_mind", "open(Fickle(S + '/file'), 'w').write('lost')", "blocked", "intact"),
    # The bytecode-cache exemption trusts the import system, not names.
    ("fake_get_code", "fake_get_code(S + '/__pycache__/planted.pyc')", "blocked", "no_planted"),
    (
        "pycache_prefix",
        "sys.pycache_prefix = S + '/prefix'; import planted_module",
        "blocked",
        "absent:prefix",
    ),
    # Code that would run later with the guard off.
    ("settrace", "sys.settrace(tracer); host.run('true')", "blocked", "absent:traced"),
    ("setprofile", "sys.setprofile(profiler); host.run('true')", "blocked", "absent:traced"),
    ("threading_settrace", "threading.settrace(tracer)", "blocked", "absent:traced"),
    ("threading_setprofile", "threading.setprofile(profiler)", "blocked", "absent:traced"),
    ("atexit", "atexit.register(os.remove, S + '/file')", "blocked", "intact"),
    ("fixture_set_up", "assert evil_fixture", "blocked", "absent:fixture"),
    ("run_fixture_set_up", "assert evil_run_fixture", "blocked", "absent:run_fixture"),
    ("fixture_teardown", "assert evil_teardown", "blocked", "absent:teardown"),
    ("run_fixture_teardown", "assert evil_run_teardown", None, "absent:run_teardown"),
    ("timeout_object", "pass", "passed", "absent:bool"),
    ("raw_thread", "run_raw_thread(lambda: open(S + '/file', 'w'))", "blocked", "intact"),
    # Reaching runbook's own objects to switch the guard or the mode.
    ("gc_get_objects", "find_run_by_gc().mode = 'execute'", "blocked", "absent:acted"),
    ("gc_get_referrers", "gc.get_referrers(host)", "blocked", "absent:acted"),
    ("gc_get_referents", "gc.get_referents(host)", "blocked", "absent:acted"),
    ("current_frames", "sys._current_frames()", "blocked", "absent:acted"),
    ("framework_frame", "sys._getframe(4)", "blocked", "absent:acted"),
    ("run_through_host", "host._on_record.__self__.mode = 'execute'", None, "absent:acted"),
    # The Host's collaborators (the policy, the recorder, the backend) are out of reach.
    (
        "reach_collaborators",
        "assert not collaborators(host), collaborators(host)",
        "passed",
        "intact",
    ),
    (
        "swap_policy",
        "swap(host, 'policy', allow_all); host.run('rm -f ' + S + '/k_swap_policy')",
        "blocked",
        "present:k_swap_policy",
    ),
    (
        "swap_policy_list",
        "swap(host, 'policy', allow_all); host.run(['rm', '-f', S + '/k_swap_policy_list'])",
        "blocked",
        "present:k_swap_policy_list",
    ),
    (
        "swap_recorder",
        "swap(host, 'record', lambda record: record); host.run('echo unrecorded')",
        "passed",
        "audited:unrecorded",
    ),
    (
        "swap_backend",
        "swap(host, 'backend', Forger()); assert 'forged' not in host.run('echo real').stdout",
        "passed",
        "intact",
    ),
    (
        "fresh_host",
        "Host(LocalBackend()).run('rm -f ' + S + '/k_fresh_host')",
        "blocked",
        "present:k_fresh_host",
    ),
    (
        "plugin_through_host",
        "allow_all_by_plugin(host._on_record.__self__); "
        "host.run('rm -f ' + S + '/k_plugin_through_host')",
        None,
        "present:k_plugin_through_host",
    ),
    (
        "traceback_locals",
        "run_after_refusal(host, 'rm -f ' + S + '/k_traceback_locals')",
        "blocked",
        "present:k_traceback_locals",
    ),
    ("clear_refusals", "clear_own_refusals(lambda: os.remove(S + '/file'))", "blocked", "intact"),
    ("framework_call", "with_framework_call(lambda: os.remove(S + '/file'))", "blocked", "intact"),
    (
        "widen_allowlist",
        "current_step.get().allow_commands = ('rm',); host.run('rm -f ' + S + '/file')",
        "blocked",
        "intact",
    ),
    (
        "unguard_step",
        "current_step.get().read_only = False; host.run('rm -f ' + S + '/file')",
        "blocked",
        "intact",
    ),
    (
        "unguard_snapshot",
        "guarded_step().read_only = False; host.run('rm -f ' + S + '/k_unguard_snapshot')",
        "blocked",
        "present:k_unguard_snapshot",
    ),
    # A program of the same name put first in PATH does not run in its place.
    (
        "environ_path",
        "os.environ['PATH'] = S + '/bin:' + os.environ['PATH']",
        "blocked",
        "present:k_path_hijack",
    ),
    (
        "environ_data_path",
        "with_path(S + '/bin', lambda: host.run(['cat', S + '/file']))",
        "passed",
        "present:k_path_hijack",
    ),
    (
        "environ_data_path_shell",
        "with_path(S + '/bin', lambda: host.run('cat ' + S + '/file'))",
        "passed",
        "present:k_path_hijack",
    ),
    (
        "step_reset_path",
        "assert without_step(lambda: host.run('printenv PATH').stdout.strip()) == SAFE_PATH",
        "passed",
        "intact",
    ),
    # Reads that must stay allowed.
    ("platform_processor", "assert isinstance(platform.processor(), str)", "passed", "intact"),
    ("prlimit_read", "resource.prlimit(PID, resource.RLIMIT_NOFILE)", "passed", "victim_limits"),
    ("logging", "logging.getLogger('x').warning('a log line')", "passed", "intact"),
    ("warnings", "warnings.warn('careful')", "passed", "intact"),
    (
        "own_frame",
        "assert sys._getframe().f_code.co_name == 'in_process_own_frame'",
        "passed",
        "intact",
    ),
    ("traceback", "format_own_traceback()", "passed", "intact"),
    ("dev_null", "open('/dev/null', 'w').write('x')", "passed", "intact"),
    ("stdout_pipe", "open('/dev/stdout', 'w').write('')", "passed", "intact"),
    ("lazy_import", "import fresh_module; assert fresh_module.VALUE == 3", "passed", "intact"),
]

IN_PROCESS_PRELUDE = '''
"""In-process mutation attempts."""
import atexit
import gc
import inspect
import logging
import mmap
import os
import platform
import posix
import readline
import resource
import signal
import stat
import sys
import threading
import traceback
import warnings
import _posixsubprocess
import _thread
from pathlib import Path

from runbook import action, check, fixture, hypothesis
from runbook.hosts.host import Host
from runbook.markers import hookimpl
from runbook.safety.audithooks import guarded_step
from runbook.hosts.local import SAFE_PATH
from runbook.hosts.local import LocalBackend
from runbook.steps import current_step

S = {scratch!r}
SOURCE = {source!r}
PID = {pid}
# Opened before any check (module code runs at collection): writes through them are refused.
FD = os.open(S + "/file", os.O_WRONLY)
FD_RW = os.open(S + "/file", os.O_RDWR)
sys.path.insert(0, S + "/lib")

h = hypothesis("h", "The machine stays as it was")
acted = hypothesis("acted", "Read-only mode never runs an action")


@check(tests=acted)
def rules_in(host):
    assert False, "ruled in, so the action is planned (and would run with --execute)"


@action(mitigates=acted, confirm=False)
def act(host):
    open(S + "/acted", "w").write("ran without --execute")


def original(function):
    """Everything an attacker might find behind a wrapper."""
    unwrapped = inspect.unwrap(function)
    for cell in getattr(unwrapped, "__closure__", None) or ():
        contents = cell.cell_contents
        if callable(contents) and getattr(contents, "__name__", "") == function.__name__:
            return contents
    return unwrapped


def run_with(start, work):
    errors = []
    thread = threading.Thread(target=lambda: _keep(errors, work))
    start(thread)
    thread.join()
    if errors:
        raise errors[0]


def run_raw_thread(work):
    errors, done = [], threading.Event()

    def body():
        _keep(errors, work)
        done.set()

    _thread.start_new_thread(body, ())
    done.wait(10)
    if errors:
        raise errors[0]


def _keep(errors, work):
    try:
        work()
    except BaseException as exc:
        errors.append(exc)


def fork_exec_args(path):
    return (
        [b"/usr/bin/touch", path.encode()], [b"/usr/bin/touch"], True, (), None, None,
        -1, -1, -1, -1, -1, -1, *os.pipe(), False, False, -1, None, None, None, -1, None,
        False,
    )


class Sneaky(str):
    def __str__(self):
        return "/dev/null"


class Equal(str):
    def __eq__(self, other):
        return True

    def __hash__(self):
        return hash("/dev/null")


class Fickle:
    def __init__(self, path):
        self.calls, self.path = 0, path

    def __fspath__(self):
        self.calls += 1
        return self.path if self.calls == 1 else "/dev/null"


def fake_get_code(path):
    source = "def get_code(path):\\n    open(path, 'wb').write(b'planted')\\n"
    namespace = {{}}
    exec(compile(source, "/usr/lib/python3/importlib/_fake.py", "exec"), namespace)
    namespace["get_code"](path)


def _unguarded(*args):
    try:
        open(S + "/traced", "w").write("ran with the guard off")
    except Exception:
        pass


def tracer(frame, event, arg):
    _unguarded()
    return tracer


def profiler(frame, event, arg):
    _unguarded()


@fixture
def evil_fixture():
    open(S + "/fixture", "w").write("set up with the guard off")
    return 1


@fixture(scope="run")
def evil_run_fixture():
    open(S + "/run_fixture", "w").write("set up with the guard off")
    return 1


@fixture
def evil_teardown():
    yield 1
    open(S + "/teardown", "w").write("torn down with the guard off")


@fixture(scope="run")
def evil_run_teardown():
    yield 1
    open(S + "/run_teardown", "w").write("torn down with the guard off")


class Timeout(float):
    def __bool__(self):
        _unguarded()
        open(S + "/bool", "w").write("evaluated with the guard off")
        return True


def find_run_by_gc():
    return next(o for o in gc.get_objects() if type(o).__name__ == "Run")


def clear_own_refusals(work):
    try:
        work()
    except Exception:
        pass
    step = current_step.get()
    step.refusals.clear()


def allow_all(*args):
    return None


class Forger:
    name, uri = "forger", "forger://"

    def execute(self, command, timeout, on_cancel):
        return "forged", "", 0

    def close(self):
        pass


def _named(obj, word):
    names = (type(obj).__name__, getattr(obj, "__name__", ""), getattr(obj, "__qualname__", ""))
    return any(word in name.lower() for name in names)


def swap(host, word, value):
    """Put ``value`` wherever the host keeps a collaborator named like ``word``."""
    names = set(dir(host)) | set(getattr(host, "__dict__", {{}}))
    for name in names:
        if word in name.lower():
            try:
                object.__setattr__(host, name, value)
            except (AttributeError, TypeError):
                pass
    for name in names:
        member = getattr(host, name, None)
        function = getattr(member, "__func__", member)
        for cell in getattr(function, "__closure__", None) or ():
            try:
                if _named(cell.cell_contents, word):
                    cell.cell_contents = value
            except ValueError:
                pass


def collaborators(host):
    """What of the run and the target a check can reach from its host, two steps away."""
    found, seen, todo = [], set(), [(host, 0)]
    while todo:
        obj, depth = todo.pop()
        if id(obj) in seen or depth > 2:
            continue
        seen.add(id(obj))
        if any(_named(obj, w) for w in ("backend", "policy", "record_command", "runcontext")):
            found.append(obj)
        if isinstance(obj, (str, bytes, int, float, type)) or obj is None:
            continue
        values = [getattr(obj, "__self__", None), getattr(obj, "__func__", None)]
        for name in [*getattr(obj, "__dict__", {{}}), *getattr(type(obj), "__slots__", ())]:
            values.append(getattr(obj, name, None))
        for name in dir(obj) if depth == 0 else ():
            values.append(getattr(obj, name, None))
        function = getattr(obj, "__func__", obj)
        for cell in getattr(function, "__closure__", None) or ():
            try:
                values.append(cell.cell_contents)
            except ValueError:
                pass
        todo += [(value, depth + 1) for value in values if value is not None]
    return found


class AllowAll:
    @hookimpl
    def runbook_command_policy(self, command):
        return "allow"


def allow_all_by_plugin(run):
    """Register a policy that allows everything, through the run's plugin manager."""
    run.hook.runbook_command_policy._hookexec.__self__.register(AllowAll())


def run_after_refusal(host, command):
    """Look in the frames of a refusal for the run, register a policy there, run again."""
    try:
        host.run(command)
    except Exception as refusal:
        tb = refusal.__traceback__
        while tb is not None:
            for value in list(tb.tb_frame.f_locals.values()):
                for found in collaborators(value):
                    run = getattr(found, "__self__", None)
                    if hasattr(run, "hook"):
                        allow_all_by_plugin(run)
            tb = tb.tb_next
    host.run(command)


def with_path(folder, work):
    """Put ``folder`` first in PATH the way no audit event sees, for ``work``."""
    before = os.environ._data[b"PATH"]
    os.environ._data[b"PATH"] = folder.encode() + b":" + before
    try:
        return work()
    finally:
        os.environ._data[b"PATH"] = before


def without_step(work):
    token = current_step.set(None)
    try:
        return work()
    finally:
        current_step.reset(token)


def with_framework_call(work):
    from runbook.safety.audithooks import framework_call

    with framework_call():
        work()


def format_own_traceback():
    try:
        raise ValueError("mine")
    except ValueError:
        assert "mine" in traceback.format_exc()
'''

_TIMEOUT_ROW = "timeout_object"


def _in_process_check(name: str, body: str) -> str:
    arguments = ["host"]
    for fixture_name in ("evil_fixture", "evil_run_fixture", "evil_teardown", "evil_run_teardown"):
        if fixture_name in body:
            arguments.append(fixture_name)
    timeout = ", timeout=Timeout(30)" if name == _TIMEOUT_ROW else ""
    return (
        f"\n\n@check(tests=h{timeout})\ndef in_process_{name}({', '.join(arguments)}):\n"
        f"    {body}\n"
    )


@pytest.fixture(scope="module")
def in_process_run(tmp_path_factory):
    """Run every in-process row once, in a subprocess; return its results and the world."""
    import json
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("in_process")
    scratch = root / "scratch"
    (scratch / "lib").mkdir(parents=True)
    (scratch / "__pycache__").mkdir()
    (scratch / "file").write_text("keep me")
    (scratch / "bin").mkdir()
    (scratch / "bin" / "cat").write_text(f"#!/bin/sh\nrm -f {scratch}/k_path_hijack\n")
    (scratch / "bin" / "cat").chmod(0o755)
    for row in IN_PROCESS:  # a file of its own for each row that would delete one
        if row[3].startswith("present:"):
            (scratch / row[3].partition(":")[2]).write_text("keep me")
    (scratch / "lib" / "planted_module.py").write_text("VALUE = 1\n")
    (scratch / "lib" / "fresh_module.py").write_text("VALUE = 3\n")
    source = root / "source"
    source.write_text("lost bytes")
    (root / "runbooks").mkdir()
    victim = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True
    )
    try:
        world = _victim_state(victim.pid)
        text = IN_PROCESS_PRELUDE.format(scratch=str(scratch), source=str(source), pid=victim.pid)
        text += "".join(_in_process_check(name, body) for name, body, _, _ in IN_PROCESS)
        (root / "runbooks" / "attacks.py").write_text(text)
        env = {
            **os.environ,
            "NO_COLOR": "1",
            "PYTHONDONTWRITEBYTECODE": "",
            "RUNBOOK_AUDIT_LOG": str(root / "audit.jsonl"),
        }
        done = subprocess.run(
            [sys.executable, "-m", "runbook", "run", "attacks", "--json", str(root / "r.json")],
            cwd=root,
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert (root / "r.json").exists(), done.stdout + done.stderr
        data = json.loads((root / "r.json").read_text())
        yield data, scratch, victim, world, done
    finally:
        victim.kill()
        victim.wait()


def _victim_state(pid):
    return {
        "priority": os.getpriority(os.PRIO_PROCESS, pid),
        "affinity": os.sched_getaffinity(pid),
        "scheduler": os.sched_getscheduler(pid),
        "limits": __import__("resource").prlimit(pid, __import__("resource").RLIMIT_NOFILE),
    }


def _probe(probe, scratch, victim, world):
    state = _victim_state(victim.pid) if victim.poll() is None else None
    kind, _, name = probe.partition(":")
    if kind == "absent":
        return not (scratch / name).exists()
    if kind == "intact":
        return (scratch / "file").read_text() == "keep me"
    if kind == "present":
        return (scratch / name).exists()
    if kind == "audited":  # the run's audit log lists a command that printed ``name``
        log = (scratch.parent / "audit.jsonl").read_text()
        return any(f"echo {name}" in line for line in log.splitlines())
    if kind == "no_planted":
        return not (scratch / "__pycache__" / "planted.pyc").exists()
    if kind == "victim_alive":
        return state is not None
    return (
        state is not None
        and state[kind.removeprefix("victim_")] == world[kind.removeprefix("victim_")]
    )


@pytest.mark.parametrize(
    ("name", "body", "expected", "probe"), IN_PROCESS, ids=[row[0] for row in IN_PROCESS]
)
def test_in_process_attempt(in_process_run, name, body, expected, probe):
    data, scratch, victim, world, _ = in_process_run
    outcomes = {c["id"]: (c["outcome"], c["message"]) for c in data["checks"]}
    outcome, message = outcomes[f"in_process_{name}"]
    if expected is not None:
        assert outcome == expected, message
    assert _probe(probe, scratch, victim, world), f"{probe} changed; outcome {outcome}: {message}"


def test_in_process_rows_leave_the_action_planned_and_the_file_whole(in_process_run):
    data, scratch, _, _, done = in_process_run
    assert [a["status"] for a in data["actions"]] == ["planned"], done.stderr
    assert not (scratch / "acted").exists()
    assert (scratch / "file").read_text() == "keep me"
    assert len(IN_PROCESS) == len({row[0] for row in IN_PROCESS}) >= 50


END_TO_END = '''
    """Mode and refusals."""
    import os

    from runbook import action, check, hypothesis
    from runbook.steps import current_step

    h = hypothesis("h", "H")
    MARK = {marker!r}
    FILE = {file!r}


    @check(tests=h)
    def flips_the_mode(host):
        recorder = getattr(host, "_on_record", None)  # the run's context, reached without gc
        run = getattr(recorder, "__self__", None)
        for name, value in [
            ("mode", "execute"),
            ("options", __import__("dataclasses").replace(run.options, execute=True)),
        ] if run is not None else []:
            try:
                object.__setattr__(run, name, value)  # past a frozen dataclass too
            except AttributeError:
                pass
        assert False, "ruled in: the action would run with --execute"


    @check
    def hides_its_refusal(host):
        try:
            os.remove(FILE)
        except Exception:
            pass
        current_step.get().refusals.clear()
        current_step.get().commands.clear()


    @action(mitigates=h, confirm=False)
    def acts(host):
        open(MARK, "w").write("ran")
'''


def _mode_project(project):
    marker, victim = project.root / "acted", project.root / "keep.txt"
    victim.write_text("keep")
    project.runbook("modes", END_TO_END.format(marker=str(marker), file=str(victim)))
    return marker, victim


def test_a_check_cannot_switch_the_run_to_execute(project):
    marker, _ = _mode_project(project)
    result, data = project.run_json("modes")
    assert [a["status"] for a in data["actions"]] == ["planned"]
    assert not marker.exists()
    assert data["mode"] == "read-only"
    assert result.exit_code == 1


def test_a_check_cannot_clear_its_refusals(project):
    _, victim = _mode_project(project)
    _, data = project.run_json("modes")
    hidden = next(c for c in data["checks"] if c["id"] == "hides_its_refusal")
    assert hidden["outcome"] == "blocked"
    assert "deleting a file" in hidden["message"]
    assert victim.read_text() == "keep"


def test_in_process_refusals_reach_the_audit_log(project, private_audit_log):
    import json

    _mode_project(project)
    project.run_json("modes")
    records = [json.loads(line) for line in private_audit_log.read_text().splitlines()]
    refused = [r for r in records if r["event"] == "command" and r["blocked"]]
    assert [(r["step"], r["command"]) for r in refused] == [
        ("hides_its_refusal", "(in-process) os.remove")
    ]
    assert "deleting a file" in refused[0]["reason"]
    assert refused[0]["exit_status"] is None


def test_fixture_teardown_refusals_are_warnings_and_audited(project, private_audit_log):
    import json

    target = project.root / "keep.txt"
    target.write_text("keep")
    project.runbook(
        "teardown",
        f'''
        """Teardown."""
        import os

        from runbook import check, fixture

        @fixture(scope="run")
        def leaves_a_mess():
            yield 1
            os.remove({str(target)!r})

        @check
        def uses_it(leaves_a_mess):
            assert leaves_a_mess == 1
        ''',
    )
    _, data = project.run_json("teardown")
    assert target.read_text() == "keep"
    assert any("deleting a file" in warning for warning in data["warnings"])
    records = [json.loads(line) for line in private_audit_log.read_text().splitlines()]
    assert any(
        r["event"] == "command" and r["blocked"] and r["step"] == "fixture teardown"
        for r in records
    )


@pytest.mark.parametrize(
    ("argument", "error"),
    [("timeout='5'", "timeout= takes a number"), ("allow_commands=[1]", "takes strings")],
)
def test_check_options_are_plain_values(argument, error):
    from runbook import check

    with pytest.raises(TypeError, match=error):
        eval(f"check({argument})", {"check": check})


def test_check_timeout_is_stored_as_a_plain_float():
    from runbook import check
    from runbook.api import CHECK_MARK

    class Seconds(float):
        def __bool__(self):
            raise AssertionError("the runner called user code")

    @check(timeout=Seconds(5))
    def probe(host):
        pass

    assert type(getattr(probe, CHECK_MARK).timeout) is float


AFTER_A_RUN = """
import multiprocessing, os, sys, threading
from click.testing import CliRunner
from runbook.cli.main import cli

result = CliRunner().invoke(cli, ["run", "shelly", "--report", "r.md", "--json", "r.json"])
assert result.exit_code == 0, result.output


def write(name):
    with open(name, "w") as out:  # refused if this thread were still taken for a check's
        out.write("ok")


def threads(prefix):
    for number in range(8):
        thread = threading.Thread(target=write, args=(f"{prefix}{number}",))
        thread.start()
        thread.join()


threads("parent")
child = multiprocessing.get_context("fork").Process(target=threads, args=("child",))
child.start()
child.join()
print(sorted(os.listdir(".")))
"""


def test_threads_after_a_run_are_not_taken_for_a_checks(project):
    """The guard keeps no thread of a finished check, in this process or a forked child."""
    project.runbook(
        "shelly",
        '''
        """Shelly."""
        from runbook import check


        @check
        def parses_a_shell_command(host):
            host.run("cat /proc/loadavg | head -n 1")
        ''',
    )
    script = project.write("after.py", AFTER_A_RUN)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=project.root, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    written = {f"{who}{n}" for who in ("parent", "child") for n in range(8)}
    assert written <= set(ast.literal_eval(done.stdout.strip())), done.stderr


FIRST_IMPORT = """
import sys
from runbook.engine.worker import Job
from runbook.steps import Step

assert "asyncio" not in sys.modules and "logging" not in sys.modules


def guarded(func):
    job = Job(func, Step("probe", "check", "local", read_only=True))
    job.run()
    return type(job.error).__name__ if job.error else "ok"


print(guarded(lambda: __import__("asyncio")))  # logging's at-fork handler, types.coroutine
print(guarded(lambda: __import__("os").register_at_fork(after_in_child=print)))
"""


def test_a_library_imported_first_in_a_check_may_register_its_own_fork_handler():
    done = subprocess.run(
        [sys.executable, "-c", FIRST_IMPORT], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok", "ReadOnlyViolation"]
