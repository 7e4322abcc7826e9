"""Security events in ECS from the agencies' firewalls, IDS, WAF, EDR and hosts.

Background: staff and citizens logging in (a few failures), firewall allows and denies,
now and then a low-severity IDS alert. Citizens come from carrier-grade NAT space
(100.64.0.0/10), internet noise from 192.0.2.0/24 and only ever to a handful of ports;
the two other documentation ranges are left to the attackers of `incidents.py`, so the
background can never trip a rule by accident.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from streams.devtools.simulate.incidents import Incident
from streams.devtools.simulate.scenario import AGENCIES, Agency

__all__ = ["SecuritySource", "dotted", "user_names"]

DOTTED_SHARE: Final = 0.10
_FAMILY: Final = ("nguyen", "tran", "le", "pham", "hoang", "vu", "dang", "bui", "do", "ngo")
_MIDDLE: Final = ("van", "thi", "duc", "minh", "thu", "ngoc", "quang", "thanh")
_GIVEN: Final = (
    "an",
    "binh",
    "cuong",
    "dung",
    "giang",
    "ha",
    "hai",
    "hanh",
    "hoa",
    "hung",
    "huong",
    "lan",
    "linh",
    "long",
    "mai",
    "nam",
    "phuong",
    "quan",
    "son",
    "thao",
    "trang",
    "tuan",
    "yen",
)
_NOISE_PORTS: Final = (22, 23, 445, 1433, 3306, 3389, 5900, 8080)
_IDS_RULES: Final = (
    "ET POLICY Outdated Windows Flash Version IE",
    "ET INFO Observed DNS Query to .top TLD",
    "GPL ICMP_INFO PING *NIX",
    "ET POLICY curl User-Agent Outbound",
)
_AGENCY: Final = {agency.code: agency for agency in AGENCIES}


def user_names() -> list[str]:
    """Every `<given><family initial><middle initial>` login, e.g. `hoant` (Hoa Nguyễn Thị)."""
    return [f"{g}{f[0]}{m[0]}" for g in _GIVEN for f in _FAMILY for m in _MIDDLE]


def dotted(event: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"source": {"ip": x}}` → `{"source.ip": x}`, the other form ECS producers use."""
    flat: dict[str, Any] = {}
    for key, value in event.items():
        if isinstance(value, dict):
            flat |= dotted(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _timestamp(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SecuritySource:
    def __init__(self, start: datetime, rng: random.Random, new_id: Callable[[], str]) -> None:
        self._start = start
        self._rng = rng
        self._new_id = new_id
        names = user_names()
        # Sixty staff per agency; workstation n belongs to staff member n.
        self._staff = {agency.code: rng.sample(names, 60) for agency in AGENCIES}

    def _event(
        self,
        at: float,
        agency: Agency,
        category: str,
        event: dict[str, Any] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        return {
            "@timestamp": _timestamp(self._start + timedelta(seconds=at)),
            "event": {"category": [category], "id": self._new_id(), **(event or {})},
            "organization": {"name": agency.code},
            **fields,
        }

    def _auth(
        self,
        at: float,
        agency: Agency,
        *,
        source: str,
        user: str,
        host: str,
        success: bool,
        ssh: bool,
    ) -> dict[str, Any]:
        port = 22 if ssh else 443
        observer = {"type": "ids", "vendor": "Wazuh"} if ssh else {"type": "waf", "vendor": "F5"}
        if ssh:
            message = (
                f"{'Accepted' if success else 'Failed'} password for {user} "
                f"from {source} port {self._rng.randrange(32768, 61000)} ssh2"
            )
        else:
            message = "Đăng nhập thành công" if success else "Đăng nhập thất bại: sai mật khẩu"
        return self._event(
            at,
            agency,
            "authentication",
            event={
                "outcome": "success" if success else "failure",
                "action": "ssh_login" if ssh else "web_login",
            },
            source={"ip": source},
            destination={"ip": agency.server_ip(host), "port": port},
            user={"name": user},
            host={"name": host},
            observer=observer,
            message=message,
        )

    def _background_auth(self, at: float) -> dict[str, Any]:
        rng = self._rng
        agency = rng.choice(AGENCIES)
        number = rng.randrange(1, 61)
        ssh = rng.random() < 0.2
        citizen = not ssh and agency.code == "SO-TTTT" and rng.random() < 0.7
        if citizen:  # a citizen or business on the public-service portal
            source = f"100.{rng.randrange(64, 128)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            user = f"{rng.randrange(10**11, 10**12):012d}"  # citizen id number (CCCD)
        else:
            source, user = agency.workstation_ip(number), self._staff[agency.code][number - 1]
        # Admins reach any server over SSH; the web logins are to the application.
        host = rng.choice(agency.servers if ssh else agency.web_servers)
        return self._auth(
            at, agency, source=source, user=user, host=host, success=rng.random() > 0.05, ssh=ssh
        )

    def _background_network(self, at: float) -> dict[str, Any]:
        rng = self._rng
        agency = rng.choice(AGENCIES)
        if rng.random() < 0.7:  # staff browsing, mail, DNS
            source = agency.workstation_ip(rng.randrange(1, 61))
            target, port = f"192.0.2.{rng.randrange(1, 255)}", rng.choice((443, 443, 80, 53, 587))
            allowed = rng.random() > 0.03
        elif rng.random() < 0.6:  # the public reaching the agency's servers
            source = f"100.{rng.randrange(64, 128)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            target, port = agency.server_ip(rng.choice(agency.web_servers)), 443
            allowed = True
        else:  # internet background noise, always on the same few ports
            source = f"192.0.2.{rng.randrange(1, 255)}"
            target, port = agency.server_ip(rng.choice(agency.servers)), rng.choice(_NOISE_PORTS)
            allowed = False
        return self._event(
            at,
            agency,
            "network",
            event={
                "outcome": "success" if allowed else "failure",
                "action": "accept" if allowed else "deny",
            },
            source={"ip": source},
            destination={"ip": target, "port": port},
            network={"transport": "udp" if port == 53 else "tcp"},
            observer={"type": "firewall", "vendor": agency.firewall},
        )

    def _background_ids(self, at: float) -> dict[str, Any]:
        agency = self._rng.choice(AGENCIES)
        return self._event(
            at,
            agency,
            "intrusion_detection",
            event={"action": "alert", "severity": 1},
            source={"ip": agency.workstation_ip(self._rng.randrange(1, 61))},
            destination={"ip": f"192.0.2.{self._rng.randrange(1, 255)}", "port": 80},
            rule={"name": self._rng.choice(_IDS_RULES)},
            observer={"type": "ids", "vendor": "Suricata"},
        )

    def background(self, at: float) -> tuple[bytes | None, dict[str, Any]]:
        draw = self._rng.random()
        if draw < 0.4:
            event = self._background_auth(at)
        elif draw < 0.95:
            event = self._background_network(at)
        else:
            event = self._background_ids(at)
        return self._finish(event)

    def _finish(self, event: dict[str, Any]) -> tuple[bytes | None, dict[str, Any]]:
        key = event["source"]["ip"] if "source" in event else event["host"]["name"]
        if self._rng.random() < DOTTED_SHARE:
            event = dotted(event)
        return key.encode(), event

    def valid_event(self, at: float) -> dict[str, Any]:
        """A nested authentication event: the raw material of malformed messages."""
        return self._background_auth(at)

    def incident_events(self, incident: Incident) -> list[tuple[float, bytes | None, Any]]:
        if incident.family != "security":
            return []
        rng, details = self._rng, incident.details
        agency = _AGENCY[details["agency"]]
        begin = (incident.starts_at - self._start).total_seconds()
        span = (incident.ends_at - incident.starts_at).total_seconds()
        events: list[dict[str, Any]] = []
        times: list[float] = []

        def spread(count: int) -> list[float]:
            return [begin + (i + rng.uniform(0.1, 0.9)) * span / count for i in range(count)]

        if incident.kind == "brute_force":
            times = spread(details["failures"] + 1)  # the last attempt gets in
            for i in range(len(times)):
                events.append(
                    self._auth(
                        times[i],
                        agency,
                        source=incident.entity,
                        user=details["user"],
                        host=details["host"],
                        success=i == len(times) - 1,
                        ssh=True,
                    )
                )
        elif incident.kind == "password_spraying":
            users = rng.sample(user_names(), details["users"])
            times = spread(len(users))
            for at, user in zip(times, users, strict=True):
                events.append(
                    self._auth(
                        at,
                        agency,
                        source=incident.entity,
                        user=user,
                        host=details["host"],
                        success=False,
                        ssh=False,
                    )
                )
        elif incident.kind == "port_scan":
            ports = rng.sample(range(1, 65536), details["ports"])
            times = spread(len(ports))
            for at, port in zip(times, ports, strict=True):
                events.append(
                    self._event(
                        at,
                        agency,
                        "network",
                        event={"outcome": "failure", "action": "deny"},
                        source={"ip": incident.entity},
                        destination={"ip": details["destination_ip"], "port": port},
                        network={"transport": "tcp"},
                        observer={"type": "firewall", "vendor": agency.firewall},
                    )
                )
        else:  # malware_outbreak: the same file on several workstations
            hosts = details["hosts"] * details["detections_per_host"]
            times = spread(len(hosts))
            for at, host in zip(times, hosts, strict=True):
                number = int(host.rsplit("-", 1)[1])
                events.append(
                    self._event(
                        at,
                        agency,
                        "malware",
                        event={"action": "malware_detected", "severity": 3},
                        host={"name": host, "ip": [agency.workstation_ip(number)]},
                        file={
                            "name": details["file_name"],
                            "hash": {"sha256": incident.entity},
                            "path": f"C:\\Users\\{self._staff[agency.code][number - 1]}"
                            f"\\Downloads\\{details['file_name']}",
                        },
                        rule={"name": "Trojan.Win32.Dropper.gen"},
                        observer={"type": "edr", "vendor": "Bkav"},
                    )
                )
        return [(at, *self._finish(event)) for at, event in zip(times, events, strict=True)]
