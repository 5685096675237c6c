"""The control daemon: the control API, the Controller over the route maps, expiry and
map walks off the event loop, metrics, the store and the fleet, the nftables wall."""
