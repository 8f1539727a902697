"""Simulated shop traffic into the running loop: the one path `intentloop simulate` and the demo share.

The catalog goes to Postgres first (ingestion checks feedback against it), then every event, plus
the deliberately malformed ones and clicks on unknown products, goes to Kafka in time order.
"""

from intentloop.runtime import Runtime
from store.catalog import load_catalog
from streams.simulator import SimConfig, Simulation, simulate
from streams.simulator.publish import TrafficCounts, produce, traffic_records


def sim_config(profile: str, *, seed: int, searches: int, shoppers: str = "realistic") -> SimConfig:
    """``shop`` (the default): a busy few minutes, head queries repeated; ``long_tail``: weeks of a
    click log, most queries searched once. ``shoppers``: ``realistic`` (paraphrases, typos,
    questions, other languages) or ``easy`` (the catalogue's own words only, as before issue 13)."""
    config = (
        SimConfig.long_tail(seed=seed, n_searches=searches)
        if profile == "long_tail"
        else SimConfig(seed=seed, n_searches=searches)
    )
    return config.model_copy(update={"realism": None}) if shoppers == "easy" else config


def send_traffic(
    rt: Runtime, config: SimConfig, *, malformed: int = 0, unknown_product: int = 0
) -> tuple[Simulation, TrafficCounts]:
    """Simulate ``config``, load its catalog, produce its events; returns what was sent.

    The bad events are drawn from ``config.seed`` too, so a seed fixes every byte sent.
    """
    sim = simulate(config)
    db = rt.ready_db()
    with db.session() as session:
        load_catalog(session, [p.model_dump() for p in sim.catalog], rt.settings.taxonomy)
    rt.ready_topics()
    records, counts = traffic_records(
        sim, malformed=malformed, unknown_product=unknown_product, seed=config.seed
    )
    produce(rt.endpoints.kafka_bootstrap, records)
    return sim, counts
