"""The fleet: relays sharing one VIP share their sessions and the flows they learn through
Redis, and tell each other they are alive (`steerctl daemon --fleet`, docs/fleet.md).

- sync.py: FleetSync, publishing this relay's sessions and installing the other relays'
- flows.py: the flows the data plane learned, shared and installed as copies
- live.py: which relays are alive, draining or dead
- views.py: what the API and the metrics read of it (status, flow lag, where a session is)
- api.py: /v1/fleet… on the control API

The rest of the daemon uses only what is named here. The Controller sees the fleet
through control.Fleet, which FleetSync is, and which `start` attaches to it.
"""

from pyctl.daemon.fleet.api import add_routes
from pyctl.daemon.fleet.flows import LAG_BUCKETS
from pyctl.daemon.fleet.sync import start
from pyctl.daemon.fleet.views import flow_lag, status

__all__ = ["LAG_BUCKETS", "add_routes", "flow_lag", "start", "status"]
