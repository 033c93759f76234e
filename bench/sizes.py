"""How big each benchmark runs: ``full`` for the figures, ``tiny`` for the smoke test."""
from __future__ import annotations

from dataclasses import dataclass, replace

# The suffix of a figure measured at the modelled AWS latency (``Size.modelled``);
# figures without it were measured at 0 ms.
MODELLED = "_modelled"


@dataclass(frozen=True)
class Size:
    name: str
    # Provisioning overhead: grants timed one at a time, each side.
    provisioning_grants: int
    # Grants run first and not counted, so imports and connections are warm.
    warmup_grants: int
    # Throughput: approvals released at once, per worker count; fewer at the
    # modelled AWS latency, where every grant takes several times as long.
    throughput_grants: int
    throughput_grants_modelled: int
    throughput_workers: tuple[int, ...]
    # Pages: rows loaded, and timed requests per page and per side.
    requests_loaded: int
    audit_events_loaded: int
    page_samples: int
    # Audit: concurrent writers, events each appends.
    audit_writers: int
    audit_events_per_writer: int
    # Seconds to wait for the workers before declaring a run stuck.
    grant_timeout: float

    def modelled(self) -> "Size":
        """This size for the runs at the modelled AWS latency."""
        return replace(self, throughput_grants=self.throughput_grants_modelled)


SIZES = {
    "full": Size(
        name="full",
        provisioning_grants=30,
        warmup_grants=2,
        throughput_grants=200,
        throughput_grants_modelled=60,
        throughput_workers=(1, 2),
        requests_loaded=10_000,
        audit_events_loaded=1_000_000,
        page_samples=30,
        audit_writers=8,
        audit_events_per_writer=250,
        grant_timeout=600,
    ),
    "tiny": Size(
        name="tiny",
        provisioning_grants=2,
        warmup_grants=1,
        throughput_grants=4,
        throughput_grants_modelled=4,
        throughput_workers=(1, 2),
        requests_loaded=30,
        audit_events_loaded=300,
        page_samples=3,
        audit_writers=2,
        audit_events_per_writer=5,
        grant_timeout=120,
    ),
}
