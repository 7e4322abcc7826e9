"""City observations: FIWARE Smart Data Models in keyValues form (docs/EVENTS.md).

The NGSI-LD normalised form (`{"type": "Property", "value": 62.4}`) and NGSI v2's
(`{"type": "Number", "value": 62.4}`) are unwrapped to keyValues before validation.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from models.common import (
    Concentration,
    EventTime,
    Measurement,
    NonEmptyStr,
    Ratio,
    Within,
    event_config,
)
from models.validation import validate_tagged

__all__ = [
    "MODELS",
    "AirQualityObserved",
    "CityObservation",
    "FloodMonitoring",
    "NoiseLevelObserved",
    "Streetlight",
    "TrafficFlowObserved",
    "WaterQualityObserved",
    "WeatherObserved",
    "entity_key",
    "event_id",
    "normalise",
    "parse",
]


def _geometry(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise PydanticCustomError("geojson", "expected a GeoJSON geometry object")
    coordinates = value.get("coordinates")
    if not isinstance(coordinates, list):
        raise PydanticCustomError("geojson", "GeoJSON geometry needs a coordinates list")
    if value["type"] == "Point":
        if len(coordinates) not in (2, 3) or not all(
            isinstance(c, int | float) and not isinstance(c, bool) and math.isfinite(c)
            for c in coordinates
        ):
            raise PydanticCustomError("geojson", "Point coordinates must be [longitude, latitude]")
        longitude, latitude = coordinates[0], coordinates[1]
        if not (-180 <= longitude <= 180 and -90 <= latitude <= 90):
            raise PydanticCustomError(
                "geojson", "Point coordinates out of range: [longitude, latitude] expected"
            )
    return value


Geometry = Annotated[dict[str, Any], BeforeValidator(_geometry)]


def _power_state(value: Any) -> Any:
    # The Smart Data Model says "on"/"off"; downstream wants a number to aggregate.
    if isinstance(value, str) and value.lower() in ("on", "off"):
        return 1.0 if value.lower() == "on" else 0.0
    if isinstance(value, bool):
        return float(value)
    return value


PowerState = Annotated[Measurement, BeforeValidator(_power_state)]


class CityObservation(BaseModel):
    """Fields every city observation has; subclasses add their measurements."""

    model_config = event_config

    #: Attributes of which at least one must be present.
    MEASUREMENTS: ClassVar[tuple[str, ...]] = ()
    #: Where the event time may come from instead of dateObserved.
    TIME_FALLBACKS: ClassVar[tuple[str, ...]] = ()

    id: NonEmptyStr | None = None
    type: str
    refDevice: NonEmptyStr
    dateObserved: EventTime
    areaServed: str | None = None
    location: Geometry | None = None

    @model_validator(mode="before")
    @classmethod
    def _time_from_fallback(cls, data: Any) -> Any:
        if isinstance(data, dict) and "dateObserved" not in data:
            for name in cls.TIME_FALLBACKS:
                if name in data:
                    return {**data, "dateObserved": data[name]}
        return data

    @model_validator(mode="after")
    def _has_a_measurement(self) -> CityObservation:
        if all(getattr(self, name) is None for name in self.MEASUREMENTS):
            raise ValueError(
                f"at least one measurement is required: one of {', '.join(self.MEASUREMENTS)}"
            )
        return self

    @property
    def event_time(self) -> datetime:
        return self.dateObserved


class AirQualityObserved(CityObservation):
    MEASUREMENTS = (
        "pm25",
        "pm10",
        "no2",
        "o3",
        "co",
        "so2",
        "airQualityIndex",
        "temperature",
        "relativeHumidity",
    )
    type: Literal["AirQualityObserved"]
    pm25: Annotated[Concentration, Within(0, 5000, "µg/m³")] | None = None
    pm10: Annotated[Concentration, Within(0, 20000, "µg/m³")] | None = None
    no2: Annotated[Concentration, Within(0, 5000, "µg/m³")] | None = None
    o3: Annotated[Concentration, Within(0, 2000, "µg/m³")] | None = None
    co: Annotated[Concentration, Within(0, 1000, "mg/m³")] | None = Field(None, description="mg/m³")
    so2: Annotated[Concentration, Within(0, 10000, "µg/m³")] | None = None
    airQualityIndex: Annotated[Concentration, Within(0, 1000, "")] | None = None
    temperature: Annotated[Measurement, Within(-90, 100, "°C")] | None = None
    relativeHumidity: Ratio | None = None


class WaterQualityObserved(CityObservation):
    MEASUREMENTS = ("pH", "conductivity", "turbidity", "temperature")
    type: Literal["WaterQualityObserved"]
    pH: Annotated[Measurement, Within(0, 14, "")] | None = None
    conductivity: Annotated[Measurement, Within(0, 200000, "µS/cm")] | None = None
    turbidity: Annotated[Measurement, Within(0, 100000, "NTU")] | None = None
    temperature: Annotated[Measurement, Within(-90, 100, "°C")] | None = None


class TrafficFlowObserved(CityObservation):
    MEASUREMENTS = ("intensity", "occupancy", "averageVehicleSpeed")
    TIME_FALLBACKS = ("dateObservedTo",)
    type: Literal["TrafficFlowObserved"]
    intensity: Annotated[Measurement, Within(0, 1000000, "vehicles")] | None = None
    occupancy: Ratio | None = None
    averageVehicleSpeed: Annotated[Measurement, Within(0, 500, "km/h")] | None = Field(
        None, description="km/h"
    )


class NoiseLevelObserved(CityObservation):
    MEASUREMENTS = ("LAeq", "LAmax")
    TIME_FALLBACKS = ("dateObservedTo",)
    type: Literal["NoiseLevelObserved"]
    LAeq: Annotated[Measurement, Within(0, 200, "dB(A)")] | None = Field(None, description="dB(A)")
    LAmax: Annotated[Measurement, Within(0, 200, "dB(A)")] | None = Field(None, description="dB(A)")


class FloodMonitoring(CityObservation):
    MEASUREMENTS = ("currentLevel", "alertLevel", "dangerLevel")
    TIME_FALLBACKS = ("observationDateTime",)
    type: Literal["FloodMonitoring"]
    currentLevel: Annotated[Measurement, Within(-500, 10000, "m")] | None = Field(
        None, description="m"
    )
    alertLevel: Annotated[Measurement, Within(-500, 10000, "m")] | None = Field(
        None, description="m"
    )
    dangerLevel: Annotated[Measurement, Within(-500, 10000, "m")] | None = Field(
        None, description="m"
    )


class WeatherObserved(CityObservation):
    MEASUREMENTS = ("precipitation", "windSpeed", "temperature")
    type: Literal["WeatherObserved"]
    precipitation: Annotated[Measurement, Within(0, 2000, "mm")] | None = None
    windSpeed: Annotated[Measurement, Within(0, 150, "m/s")] | None = None
    temperature: Annotated[Measurement, Within(-90, 100, "°C")] | None = None


class Streetlight(CityObservation):
    MEASUREMENTS = ("powerState", "powerConsumption")
    type: Literal["Streetlight"]
    powerState: PowerState | None = Field(None, description='"on"/"off" stored as 1/0')
    powerConsumption: Annotated[Measurement, Within(0, 10000000, "W")] | None = None


MODELS: dict[str, type[CityObservation]] = {
    model.model_fields["type"].annotation.__args__[0]: model  # type: ignore[union-attr]
    for model in (
        AirQualityObserved,
        WaterQualityObserved,
        TrafficFlowObserved,
        NoiseLevelObserved,
        FloodMonitoring,
        WeatherObserved,
        Streetlight,
    )
}


def _unwrap(value: Any) -> Any:
    """One NGSI attribute to its keyValues value."""
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        if "value" in value:
            inner = value["value"]
            # NGSI-LD typed literal: {"@type": "DateTime", "@value": "…"}
            if isinstance(inner, dict) and "@value" in inner:
                return inner["@value"]
            return inner
        if value["type"] == "Relationship" and "object" in value:
            return value["object"]
    return value


def normalise(obj: dict[str, Any]) -> dict[str, Any]:
    """NGSI-LD / NGSI v2 normalised form to keyValues; keyValues passes through."""
    return {key: _unwrap(value) for key, value in obj.items()}


def parse(obj: Any, context: dict[str, Any]) -> CityObservation:
    if isinstance(obj, dict):
        obj = normalise(obj)
    return validate_tagged(obj, "type", MODELS, context)


def entity_key(event: CityObservation) -> str:
    return event.refDevice


def event_id(event: CityObservation) -> str | None:
    return event.id
