"""steer's control plane: loader, typed map access, daemon, control API, CLI and lab."""
