"""The namespace lab (`steerctl lab`) and the demo (`steerctl demo`): optional, and the
only part of pyctl that drives WebRTC clients (the `lab` extra brings aiortc)."""
