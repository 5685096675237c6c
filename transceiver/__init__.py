"""The steer transceiver: an aiortc WebRTC endpoint with WHIP signaling."""
