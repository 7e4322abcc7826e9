"""The reference province, Hải Dương: its 12 districts, monitoring devices and agencies.

Static on purpose: the province's infrastructure does not change with the seed; only
which device, agency or attacker an incident involves does (`incidents.py`).
Coordinates are approximate district centres; gauge levels are plausible, not official.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import timedelta, timezone
from typing import Any, Final

__all__ = [
    "AGENCIES",
    "DEVICES",
    "DISTRICTS",
    "DISTRICT_BY_NAME",
    "PROCEDURES",
    "VN_TZ",
    "Agency",
    "Device",
    "District",
    "Procedure",
    "devices_of",
]

# Vietnam has kept UTC+7 without daylight saving since 1975: a fixed offset is exact
# and needs no tz database on the host.
VN_TZ: Final = timezone(timedelta(hours=7))


@dataclass(frozen=True, slots=True)
class District:
    name: str
    lon: float
    lat: float
    pollution: float  # background level relative to the province (industry, traffic)


DISTRICTS: Final[tuple[District, ...]] = (
    District("TP Hải Dương", 106.3146, 20.9399, 1.15),
    District("TP Chí Linh", 106.3900, 21.1150, 1.25),  # Phả Lại coal power plant
    District("TX Kinh Môn", 106.5080, 21.0000, 1.30),  # cement works
    District("Nam Sách", 106.3380, 21.0050, 1.00),
    District("Kim Thành", 106.5000, 20.9450, 1.05),
    District("Thanh Hà", 106.4250, 20.8950, 0.90),
    District("Cẩm Giàng", 106.2200, 20.9550, 1.10),  # industrial parks along QL5
    District("Bình Giang", 106.1900, 20.8700, 0.95),
    District("Gia Lộc", 106.2950, 20.8650, 0.95),
    District("Tứ Kỳ", 106.4050, 20.8200, 0.90),
    District("Ninh Giang", 106.3900, 20.7300, 0.85),
    District("Thanh Miện", 106.2400, 20.7800, 0.85),
)
DISTRICT_BY_NAME: Final = {district.name: district for district in DISTRICTS}


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    model: str  # the Smart Data Model it reports
    district: str
    lon: float
    lat: float
    name: str = ""
    alert_level: float = 0.0  # water level gauges, metres
    danger_level: float = 0.0
    base_level: float = 0.0
    capacity: float = 0.0  # traffic counters: vehicles per minute at saturation
    free_speed: float = 0.0  # km/h


def _place(district: str, k: int) -> tuple[float, float]:
    # Golden-angle spiral around the district centre: distinct, static, within ~3 km.
    centre = DISTRICT_BY_NAME[district]
    angle, radius = k * 2.39996, 0.008 + 0.006 * k
    return (
        round(centre.lon + radius * math.cos(angle), 5),
        round(centre.lat + radius * math.sin(angle), 5),
    )


def _devices() -> tuple[Device, ...]:
    placed: dict[str, int] = {}
    devices: list[Device] = []

    def add(prefix: str, model: str, district: str, **attrs: Any) -> None:
        number = sum(device.id.startswith(prefix) for device in devices) + 1
        k = placed[district] = placed.get(district, -1) + 1
        lon, lat = _place(district, k)
        devices.append(Device(f"{prefix}{number:03d}", model, district, lon, lat, **attrs))

    air = {"TP Hải Dương": 3, "TP Chí Linh": 2, "TX Kinh Môn": 2, "Cẩm Giàng": 2}
    for district in DISTRICTS:
        for _ in range(air.get(district.name, 1)):
            add("HD-AQ-", "AirQualityObserved", district.name)
    roads = (
        ("TP Hải Dương", "QL5", 60, 50),
        ("TP Hải Dương", "Đại lộ Hồ Chí Minh", 45, 45),
        ("TP Hải Dương", "QL37", 35, 50),
        ("TP Chí Linh", "QL18", 40, 60),
        ("TP Chí Linh", "QL37", 25, 55),
        ("TX Kinh Môn", "QL17B", 25, 55),
        ("Nam Sách", "QL37", 25, 55),
        ("Kim Thành", "QL5", 55, 65),
        ("Thanh Hà", "ĐT390", 15, 50),
        ("Cẩm Giàng", "QL5", 60, 65),
        ("Cẩm Giàng", "CT Hà Nội–Hải Phòng", 50, 90),
        ("Bình Giang", "QL38", 25, 55),
        ("Gia Lộc", "QL37", 25, 55),
        ("Tứ Kỳ", "QL10", 20, 55),
        ("Ninh Giang", "QL37", 20, 50),
        ("Thanh Miện", "QL38B", 15, 50),
    )
    for district_name, road, capacity, speed in roads:
        add(
            "HD-TF-",
            "TrafficFlowObserved",
            district_name,
            name=road,
            capacity=capacity,
            free_speed=speed,
        )
    gauges = (
        ("TP Chí Linh", "Phả Lại (sông Thái Bình)", 4.0, 5.0, 2.6),
        ("TX Kinh Môn", "Bến Triều (sông Kinh Thầy)", 2.5, 3.3, 1.5),
        ("TP Hải Dương", "Phú Lương (sông Thái Bình)", 2.8, 3.6, 1.7),
        ("Thanh Hà", "Bá Nha (sông Rạng)", 1.9, 2.5, 1.0),
        ("Tứ Kỳ", "Quang Phục (sông Văn Úc)", 1.8, 2.4, 0.9),
        ("Ninh Giang", "Ninh Giang (sông Luộc)", 2.6, 3.4, 1.6),
        ("Bình Giang", "Kẻ Sặt (sông Sặt)", 2.2, 2.8, 1.3),
    )
    for district_name, name, alert, danger, base in gauges:
        add(
            "HD-WL-",
            "FloodMonitoring",
            district_name,
            name=name,
            alert_level=alert,
            danger_level=danger,
            base_level=base,
        )
    for district_name in ("TP Hải Dương", "TP Chí Linh", "Ninh Giang"):
        add("HD-WX-", "WeatherObserved", district_name)
    for district_name in ("TP Hải Dương", "TP Hải Dương", "TP Chí Linh", "Cẩm Giàng"):
        add("HD-NS-", "NoiseLevelObserved", district_name)
    return tuple(devices)


DEVICES: Final[tuple[Device, ...]] = _devices()


def devices_of(model: str) -> tuple[Device, ...]:
    return tuple(device for device in DEVICES if device.model == model)


@dataclass(frozen=True, slots=True)
class Agency:
    code: str
    district: str
    unit: str  # prefix of its dossier ids on the one-stop-shop system
    sectors: tuple[str, ...]
    weight: float  # share of the province's dossiers
    subnet: int  # its LAN is 10.20.<subnet>.0/24
    firewall: str  # vendor of its perimeter firewall

    servers: tuple[str, ...] = ()
    web_servers: tuple[str, ...] = ()  # those staff and citizens log in to

    @property
    def slug(self) -> str:
        return self.code.lower().replace("-", "")

    def server_ip(self, host: str) -> str:
        return f"10.20.{self.subnet}.{10 + self.servers.index(host)}"

    def workstation(self, number: int) -> str:
        return f"{self.slug}-pc-{number:03d}"

    def workstation_ip(self, number: int) -> str:
        return f"10.20.{self.subnet}.{100 + number}"


_DEPARTMENTS = (
    ("SO-TNMT", 17, ("dat_dai", "moi_truong"), 2.0),
    ("SO-TTTT", 21, ("thong_tin",), 0.3),
    ("SO-KHDT", 12, ("kinh_doanh", "dau_tu"), 1.5),
    ("SO-XD", 15, ("xay_dung",), 0.8),
    ("SO-TP", 10, ("tu_phap",), 1.2),
    ("SO-GTVT", 16, ("giao_thong",), 1.5),
    ("SO-LDTBXH", 19, ("lao_dong",), 0.6),
    ("SO-YT", 24, ("y_te",), 0.5),
)
_DISTRICT_CODES = ("TPHD", "CL", "KM", "NS", "KT", "TH", "CG", "BG", "GL", "TK", "NG", "TM")
_LOCAL_SECTORS = ("ho_tich", "dat_dai", "xay_dung", "kinh_doanh", "tu_phap")


def _with_servers(agency: Agency) -> Agency:
    if agency.code == "SO-TTTT":  # runs the provincial data centre and portals
        portals = ("dvc-portal-01", "dvc-portal-02", "sso-01")
        return replace(agency, servers=(*portals, "mail-01", "ioc-api-01"), web_servers=portals)
    slug = agency.slug
    return replace(
        agency,
        servers=(f"{slug}-app-01", f"{slug}-db-01", f"{slug}-file-01"),
        web_servers=(f"{slug}-app-01",),
    )


AGENCIES: Final[tuple[Agency, ...]] = tuple(
    map(
        _with_servers,
        (
            *(
                Agency(
                    code,
                    "TP Hải Dương",
                    f"000.00.{unit:02d}.H23",
                    sectors,
                    weight,
                    index + 1,
                    "Fortinet",
                )
                for index, (code, unit, sectors, weight) in enumerate(_DEPARTMENTS)
            ),
            *(
                Agency(
                    f"UBND-{short}",
                    district.name,
                    f"000.00.{31 + index:02d}.H23",
                    _LOCAL_SECTORS,
                    1.6 if index < 2 else 1.0,
                    31 + index,
                    "Sophos",
                )
                for index, (short, district) in enumerate(
                    zip(_DISTRICT_CODES, DISTRICTS, strict=True)
                )
            ),
        ),
    )
)


@dataclass(frozen=True, slots=True)
class Procedure:
    code: str
    fee_vnd: int
    days: int  # statutory processing time, working days


PROCEDURES: Final[dict[str, tuple[Procedure, ...]]] = {
    "dat_dai": (
        Procedure("1.004227", 50_000, 10),
        Procedure("1.003010", 100_000, 15),
        Procedure("2.000889", 30_000, 7),
    ),
    "moi_truong": (Procedure("1.010727", 0, 15), Procedure("1.004316", 500_000, 20)),
    "thong_tin": (Procedure("1.003901", 0, 5),),
    "kinh_doanh": (Procedure("2.001610", 50_000, 3), Procedure("2.000575", 100_000, 3)),
    "dau_tu": (Procedure("1.009645", 0, 15),),
    "xay_dung": (Procedure("1.009974", 75_000, 15), Procedure("1.009979", 150_000, 20)),
    "tu_phap": (Procedure("2.000488", 200_000, 10), Procedure("2.001263", 0, 5)),
    "giao_thong": (Procedure("1.002804", 135_000, 5), Procedure("1.001777", 0, 5)),
    "lao_dong": (Procedure("1.001776", 0, 10),),
    "y_te": (Procedure("1.002398", 360_000, 20),),
    "ho_tich": (
        Procedure("1.001193", 0, 1),
        Procedure("2.000635", 8_000, 1),
        Procedure("1.000894", 0, 3),
    ),
}
