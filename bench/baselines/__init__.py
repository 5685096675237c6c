"""The relays steer is compared with: bare XDP, compiled and Python userspace, nftables."""
