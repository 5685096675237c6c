"""What the relay's control plane and the transceiver both need, and nothing else: the
constants mirrored from bpf/steer_shared.h, endpoints, the ufrag, sealed-ufrag and CID
layouts, STUN building, the control API's client, credentials and runtime paths. It
imports neither pyctl nor bcc (tests/unit/test_layers.py keeps it so)."""
