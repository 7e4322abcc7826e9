"""The simulator: deterministic, realistic traffic of Hải Dương province's IOC sources.

    Simulation(seed=1, start=datetime.now(UTC), rate=200, duration=60).messages()

yields the three families' messages (`city`, `services`, `security`) with injected
incidents (`Simulation.incidents()`, the ground truth) and a share of malformed
messages, after `backfill=` seconds of thinned history if asked; `run` produces them
to Kafka in real time (the history as fast as it can).

    scenario.py   the province: districts, devices, agencies      (static data)
    climate.py    daily and seasonal cycles                        (pure functions)
    incidents.py  what happens when, to whom                       (pure functions)
    city.py, services.py, security.py   one family each
    malformed.py  what careless integrators send
    generator.py  `Simulation`: the message sequence
    producer.py   `run`: the sequence to Kafka, paced, with manifest and record
"""

from streams.devtools.simulate.generator import SimMessage, Simulation
from streams.devtools.simulate.incidents import Incident
from streams.devtools.simulate.producer import Progress, run

__all__ = ["Incident", "Progress", "SimMessage", "Simulation", "run"]
