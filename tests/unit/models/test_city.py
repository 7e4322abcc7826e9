from datetime import UTC, datetime

import pytest

from models import InvalidEvent
from models.city import AirQualityObserved, FloodMonitoring, Streetlight, parse
from tests.conftest import air_quality


def rejection(obj: object, context: dict) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        parse(obj, context)
    return caught.value


def test_contract_example_is_accepted_and_time_stored_in_utc(context):
    event = parse(air_quality(), context)
    assert isinstance(event, AirQualityObserved)
    assert event.dateObserved == datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
    assert event.pm25 == 62.4 and event.relativeHumidity == 0.71
    assert event.areaServed == "TP Hải Dương"


def test_unknown_extra_fields_are_kept(context):
    event = parse(air_quality(reliability=0.7, vendorNote="x"), context)
    dumped = event.model_dump()
    assert dumped["reliability"] == 0.7 and dumped["vendorNote"] == "x"


def test_epoch_milliseconds_accepted(context):
    event = parse(air_quality(dateObserved=1_795_669_200_000), context)
    assert event.dateObserved == datetime.fromtimestamp(1_795_669_200, UTC)


def test_ngsi_ld_normalised_form_is_unwrapped(context):
    normalised = {
        "id": "urn:ngsi-ld:AirQualityObserved:HD-AQ-017:1",
        "type": "AirQualityObserved",
        "refDevice": {"type": "Relationship", "object": "HD-AQ-017"},
        "dateObserved": {
            "type": "Property",
            "value": {"@type": "DateTime", "@value": "2026-11-26T10:00:00+07:00"},
        },
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [106.31, 20.94]},
        },
        "pm25": {"type": "Property", "value": 62.4, "unitCode": "GQ"},
        "no2": {"type": "Number", "value": 41},  # NGSI v2 normalised
    }
    event = parse(normalised, context)
    assert event.refDevice == "HD-AQ-017"
    assert event.pm25 == 62.4 and event.no2 == 41.0
    assert event.location == {"type": "Point", "coordinates": [106.31, 20.94]}
    assert event.dateObserved == datetime(2026, 11, 26, 3, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"pm25": "62.4"}, "pm25: value is not a number (got str)"),
        ({"pm25": True}, "pm25: value is not a number (got bool)"),
        ({"pm25": float("nan")}, "pm25: value is not a finite number"),
        ({"pm10": float("inf")}, "pm10: value is not a finite number"),
        ({"no2": -1.5}, "no2: concentration must not be negative (got -1.5)"),
        ({"relativeHumidity": 71}, "relativeHumidity: must be a ratio between 0 and 1 (got 71.0)"),
        ({"refDevice": None}, "refDevice: field required"),
        ({"dateObserved": None}, "dateObserved: field required"),
        ({"dateObserved": "2026-11-26T10:00:00"}, "has no UTC offset"),
        ({"dateObserved": "yesterday"}, "dateObserved: not an RFC 3339 time: 'yesterday'"),
        ({"dateObserved": 1_795_669_200}, "epoch milliseconds expected"),
        ({"dateObserved": 9.2e21}, "dateObserved: epoch milliseconds out of range"),
        ({"dateObserved": "0001-01-01T00:00:00+07:00"}, "dateObserved: time '0001-01-01"),
        ({"dateObserved": "2026-11-26T12:06:00+07:00"}, "more than 300 s in the future"),
        ({"location": {"type": "Point", "coordinates": [500, 20]}}, "location: "),
    ],
)
def test_each_contract_rejection_names_the_field(context, change, expected):
    assert expected in rejection(air_quality(**change), context).reason


def test_event_time_within_skew_is_accepted(context):
    assert parse(air_quality(dateObserved="2026-11-26T12:04:00+07:00"), context)


def test_at_least_one_measurement_required(context):
    event = air_quality(pm25=None, pm10=None, no2=None, relativeHumidity=None)
    assert "at least one measurement is required" in rejection(event, context).reason


def test_unknown_or_missing_type(context):
    assert rejection(air_quality(type="Spaceship"), context).field == "type"
    assert "type: field required" in rejection(air_quality(type=None), context).reason


def test_not_an_object(context):
    assert "expected a JSON object, got list" in rejection([1], context).reason


def test_time_fallbacks_for_flood_and_interval_models(context):
    flood = parse(
        {
            "type": "FloodMonitoring",
            "refDevice": "HD-WL-03",
            "observationDateTime": "2026-11-26T11:00:00+07:00",
            "currentLevel": 2.3,
            "alertLevel": 3.0,
            "dangerLevel": 4.0,
        },
        context,
    )
    assert isinstance(flood, FloodMonitoring)
    assert flood.event_time == datetime(2026, 11, 26, 4, 0, tzinfo=UTC)
    traffic = parse(
        {
            "type": "TrafficFlowObserved",
            "refDevice": "HD-TF-01",
            "dateObservedFrom": "2026-11-26T10:55:00+07:00",
            "dateObservedTo": "2026-11-26T11:00:00+07:00",
            "intensity": 120,
            "occupancy": 0.3,
        },
        context,
    )
    assert traffic.event_time == datetime(2026, 11, 26, 4, 0, tzinfo=UTC)


def test_streetlight_power_state_on_off_becomes_number(context):
    light = parse(
        {
            "type": "Streetlight",
            "refDevice": "SL-1",
            "dateObserved": "2026-11-26T11:00:00+07:00",
            "powerState": "on",
        },
        context,
    )
    assert isinstance(light, Streetlight) and light.powerState == 1.0
